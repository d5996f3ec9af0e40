package runtime

import (
	"crypto/tls"
	"log/slog"
	"time"

	"github.com/amqprpc/amqprpc/internal/amqpio"
	"github.com/amqprpc/amqprpc/internal/wire"
)

// maxQueuedCalls bounds the calls a client queues to be published with
// others while its connection is busy; a call beyond waits for room, until
// its deadline. A variable for tests.
var maxQueuedCalls = 4096

// Defaults of the options below.
const (
	// DefaultExchange is the topic exchange requests are published to.
	DefaultExchange = "amqprpc"
	// DefaultTimeout bounds a call whose context has no deadline.
	DefaultTimeout = 30 * time.Second
	// DefaultPrefetch is how many of each of its queues' requests a server
	// takes, and runs, at once.
	DefaultPrefetch = 64
	// DefaultMaxBodySize is the largest request body a server accepts and
	// a client sends: 16 MiB.
	DefaultMaxBodySize = 16 << 20
	// DefaultMaxRequestBytes bounds the request bodies a server holds at
	// once: 256 MiB.
	DefaultMaxRequestBytes = 256 << 20
	// DefaultReconnectMin and DefaultReconnectMax bound the wait between
	// attempts to reconnect: it starts at the first and doubles up to the
	// second.
	DefaultReconnectMin = 100 * time.Millisecond
	DefaultReconnectMax = 5 * time.Second
	// DefaultHeartbeat is the AMQP heartbeat interval a connection asks
	// for: see WithHeartbeat.
	DefaultHeartbeat = 5 * time.Second
	// DefaultDialTimeout bounds an attempt to connect to one broker: see
	// WithDialTimeout.
	DefaultDialTimeout = 5 * time.Second
	// DefaultQueueType is the kind of a topic's queue: see WithQueueType.
	DefaultQueueType = QueueClassic
	// DefaultDeliveryLimit is how often a quorum topic queue delivers a
	// request before the broker drops it (or dead-letters it).
	DefaultDeliveryLimit = 10
)

// A ClientOption configures a Client (Dial), and a ServerOption a Server
// (NewServer). An Option configures both, for what clients and servers of
// a topic share (the exchange, the brokers, the logger, the protocol); an
// option of one side only is a compile error on the other. A Local (in
// memory) is both, and takes either (LocalOption).
//
// Options describe; they do not sequence: the settings that a set of
// options makes do not depend on the order they were given in, but for an
// option given twice, whose last value holds. Where two options touch one
// setting, the narrower wins: WithAckAfterReply over WithProfile over
// WithOslo's default, WithExchange over OsloConfig.ControlExchange.
type (
	ClientOption interface {
		LocalOption
		applyClient(*options)
	}
	ServerOption interface {
		LocalOption
		applyServer(*options)
	}
	Option interface {
		ClientOption
		ServerOption
	}
	LocalOption interface{ applyLocal(*options) }
)

// clientOption, serverOption and option are the options of one side, of
// the other, and of both.
type (
	clientOption func(*options)
	serverOption func(*options)
	option       func(*options)
)

func (o clientOption) applyClient(c *options) { o(c) }
func (o clientOption) applyLocal(c *options)  { o(c) }
func (o serverOption) applyServer(c *options) { o(c) }
func (o serverOption) applyLocal(c *options)  { o(c) }
func (o option) applyClient(c *options)       { o(c) }
func (o option) applyServer(c *options)       { o(c) }
func (o option) applyLocal(c *options)        { o(c) }

// setting is a value an option may set: unset, it takes a default that
// other options may decide.
type setting[T any] struct {
	v   T
	set bool
}

func (s *setting[T]) to(v T) { s.v, s.set = v, true }

// or returns the value set, else def.
func (s setting[T]) or(def T) T {
	if s.set {
		return s.v
	}
	return def
}

// options are what the options given say, before defaults.
type options struct {
	exchange           setting[string]
	profile            setting[Profile]
	requestConfirms    setting[bool]
	replyConfirms      setting[bool]
	ackAfterReply      setting[bool]
	oslo               *OsloConfig
	config             // the settings no other option decides
	serverInterceptors []ServerInterceptor
	clientInterceptors []ClientInterceptor
}

// config is what a client or a server runs with: the options given,
// resolved.
type config struct {
	exchange     string
	timeout      time.Duration
	prefetch     int
	logger       *slog.Logger
	tls          *tls.Config
	heartbeat    time.Duration
	dialTimeout  time.Duration
	serverName   string
	urls         []string // brokers to try after the first
	reconnectMin time.Duration
	reconnectMax time.Duration
	maxInFlight  int
	maxQueued    int
	dedupe       int
	maxBody      int
	maxHeld      int
	noBatching   bool
	// Who calls (caller.go, authorize.go).
	userID          setting[string] // the user_id requests carry; unset: the login's
	refuseAnonymous bool
	policy          *Policy
	// The topic's queue (see topology.go).
	queueType          QueueType
	queueExpiry        time.Duration
	deliveryLimit      int
	deadLetterExchange string
	queueLimit         int
	serverInterceptors []ServerInterceptor
	clientInterceptors []ClientInterceptor
	// Streams (stream.go).
	streamWindow             int
	streamSilence            time.Duration
	maxStreams               int
	streamServerInterceptors []StreamServerInterceptor
	streamClientInterceptors []StreamClientInterceptor
	// oslo, when set, makes the protocol oslo.messaging's (WithOslo).
	oslo        *OsloConfig
	callMonitor time.Duration
	// The delivery guarantees (see Profile).
	requestConfirms bool
	replyConfirms   bool
	ackAfterReply   bool
}

// newConfig applies the options given with apply to the defaults, and
// resolves what several options decide.
func newConfig(apply func(*options)) config {
	o := options{config: config{
		timeout:       DefaultTimeout,
		prefetch:      DefaultPrefetch,
		logger:        slog.Default(),
		reconnectMin:  DefaultReconnectMin,
		reconnectMax:  DefaultReconnectMax,
		heartbeat:     DefaultHeartbeat,
		dialTimeout:   DefaultDialTimeout,
		maxBody:       DefaultMaxBodySize,
		maxHeld:       DefaultMaxRequestBytes,
		maxQueued:     maxQueuedCalls,
		queueType:     DefaultQueueType,
		deliveryLimit: DefaultDeliveryLimit,
		streamWindow:  DefaultStreamWindow,
		streamSilence: DefaultStreamSilence,
		maxStreams:    DefaultMaxStreams,
	}}
	apply(&o)
	c := o.config
	c.reconnectMax = max(c.reconnectMax, c.reconnectMin)
	c.serverInterceptors, c.clientInterceptors = o.serverInterceptors, o.clientInterceptors
	c.oslo = o.oslo
	exchange, ackAfterReply := DefaultExchange, true
	if o.oslo != nil {
		exchange, ackAfterReply = o.oslo.ControlExchange, false // oslo.messaging's servers acknowledge when they take a request
		c.callMonitor = o.oslo.CallMonitorTimeout
	}
	c.exchange = o.exchange.or(exchange)
	if o.profile.set {
		c.requestConfirms, c.replyConfirms, ackAfterReply = o.profile.v.guarantees()
	} else {
		c.requestConfirms, c.replyConfirms, _ = DefaultProfile.guarantees()
	}
	c.requestConfirms = o.requestConfirms.or(c.requestConfirms)
	c.replyConfirms = o.replyConfirms.or(c.replyConfirms)
	c.ackAfterReply = o.ackAfterReply.or(ackAfterReply)
	return c
}

func clientConfig(opts []ClientOption) config {
	return newConfig(func(c *options) {
		for _, o := range opts {
			o.applyClient(c)
		}
	})
}

func serverConfig(opts []ServerOption) config {
	return newConfig(func(c *options) {
		for _, o := range opts {
			o.applyServer(c)
		}
	})
}

func localConfig(opts []LocalOption) config {
	return newConfig(func(c *options) {
		for _, o := range opts {
			o.applyLocal(c)
		}
	})
}

// protocol returns the protocol c says: oslo.messaging's with WithOslo,
// else amqprpc's.
func (c *config) protocol() *wire.Protocol {
	if c.oslo != nil {
		return wire.Oslo(c.oslo.settings(c.exchange))
	}
	return wire.Amqprpc(wire.AmqprpcTopology{Exchange: c.exchange, Quorum: c.queueType == QueueQuorum,
		DeliveryLimit: c.deliveryLimit, Expiry: c.queueExpiry, DeadLetterExchange: c.deadLetterExchange, MaxLength: c.queueLimit})
}

// connector returns the connector of url and c's brokers, naming its
// connections name; heldBytes, when set, bounds what each connection holds
// of the bodies of messages delivered to it (amqpio.Budget).
func (c *config) connector(url, name string, heldBytes int) *amqpio.Connector {
	return amqpio.NewConnector(amqpio.Settings{
		URLs:      append([]string{url}, c.urls...),
		Name:      name,
		TLS:       c.tls,
		Heartbeat: c.heartbeat,
		Timeout:   c.dialTimeout,
		HeldBytes: heldBytes,
	})
}

// backoff is how c waits between attempts to reconnect.
func (c *config) backoff() amqpio.Backoff {
	return amqpio.Backoff{First: c.reconnectMin, Most: c.reconnectMax}
}

// WithExchange sets the name of the topic exchange that requests are
// published to (client) and that the topic's queue is bound to (server).
// Clients and servers of one topic must agree on it. The exchange is
// declared durable. Default: DefaultExchange ("amqprpc"), or, with
// WithOslo, OsloConfig.ControlExchange.
func WithExchange(name string) Option {
	return option(func(c *options) { c.exchange.to(name) })
}

// WithTimeout sets how long a client's call may take when its context has
// no deadline. A context deadline, when present, always wins.
// Values <= 0 are ignored. Default: DefaultTimeout (30s). Client only.
func WithTimeout(d time.Duration) ClientOption {
	return clientOption(func(c *options) {
		if d > 0 {
			c.timeout = d
		}
	})
}

// WithBatching sets whether a client sends calls that come close together
// for one topic several to a message, and accepts its replies several to a
// message (docs/PROTOCOL.md). Calls go several to a message only to a topic
// whose replies said that its servers read them, as amqprpc servers' do; a
// batch that reaches a server that does not read batches comes back, and
// its calls go again one by one. Off, each call and each reply is a
// message of its own. Default: on. Client only: servers answer in batches
// the calls that accept it.
func WithBatching(on bool) ClientOption {
	return clientOption(func(c *options) { c.noBatching = !on })
}

// WithPrefetch sets how many messages a server takes from each of its
// three queues (the topic's, its own, its fanout queue) before
// acknowledging them, and how many of each queue's requests run at once,
// or up to twice as many when requests come in batches (docs/PROTOCOL.md).
// Values <= 0 are ignored. Default: DefaultPrefetch (64). Server only.
func WithPrefetch(n int) ServerOption {
	return serverOption(func(c *options) {
		if n > 0 {
			c.prefetch = n
		}
	})
}

// WithMaxRequestBytes bounds the request bodies a server holds at once:
// those the broker delivered and whose methods have not returned. While
// they add up to n, the server reads nothing more from the broker, which
// holds the next requests (and slows their publishers down as its queues
// grow), whatever the prefetch count allows; a request larger than n is
// taken alone. Values <= 0 are ignored. Default: DefaultMaxRequestBytes
// (256 MiB). Server only.
func WithMaxRequestBytes(n int) ServerOption {
	return serverOption(func(c *options) {
		if n > 0 {
			c.maxHeld = n
		}
	})
}

// WithLogger sets the logger for events that no caller sees, such as a
// malformed request rejected by a server or a reply nobody waits for.
// Default: slog.Default().
func WithLogger(l *slog.Logger) Option {
	return option(func(c *options) {
		if l != nil {
			c.logger = l
		}
	})
}

// WithTLS sets the TLS configuration of amqps:// URLs: the CA that
// verifies the broker, and the client certificate, if the broker asks for
// one. Default: nil, for which an amqps:// URL's query describes it
// (cacertfile, certfile, keyfile, server_name_indication), as for
// amqp091-go. ServerName defaults to the URL's host.
func WithTLS(cfg *tls.Config) Option {
	return option(func(c *options) { c.tls = cfg })
}

// WithHeartbeat sets the AMQP heartbeat interval that the connection asks
// the broker for (the broker may ask for less, and AMQP counts it in whole
// seconds). A connection over which nothing arrives for one and a half
// intervals is taken for lost: the client or server connects again, to
// the next broker of its URLs first. This is how a broker that froze (a
// stalled VM, a network that drops packets without a word) is noticed; one
// that stops or crashes closes its connections, which is noticed at once.
// Values <= 0 are ignored. The URL's heartbeat (?heartbeat=N, in seconds)
// overrides it.
//
// Default: DefaultHeartbeat, 5 s, chosen for RPC: a caller's default
// deadline is 30 s, and a frozen broker is left within 8 s, with time to
// answer on another. Its cost is one 8-byte frame each way every 2.5 s on
// a connection with no other traffic. Lower values notice faster (1 s:
// within 1.5 s) at the risk of taking a broker or a process stalled for a
// moment (a long pause of the garbage collector, a starved CPU) for gone,
// and reconnecting for nothing.
func WithHeartbeat(d time.Duration) Option {
	return option(func(c *options) {
		if d > 0 {
			c.heartbeat = d
		}
	})
}

// WithDialTimeout bounds each attempt to connect to one broker: the TCP
// connection and the TLS and AMQP handshakes. A broker that froze still
// accepts TCP connections and never answers; after d, the next broker of
// the URLs is tried. Values <= 0 are ignored. A URL's connection_timeout
// (in milliseconds) overrides it for that URL. Default:
// DefaultDialTimeout, 5 s.
func WithDialTimeout(d time.Duration) Option {
	return option(func(c *options) {
		if d > 0 {
			c.dialTimeout = d
		}
	})
}

// WithServerName sets the server's name: a client reaches this server alone
// by naming it (Target.Server; generated clients: ToServer), through the
// routing key <topic>.<name>, and its replies to a Gather carry it. Servers
// of one topic should have different names: two of one name would each
// receive the requests sent to it. Default: the host name. Server only.
func WithServerName(name string) ServerOption {
	return serverOption(func(c *options) { c.serverName = name })
}

// WithUserID sets the user_id property of every request the client sends:
// the name of the user its connections log in as, which the broker checks
// (a message whose user_id is not its connection's user is refused, and
// the channel it came on closed: ErrAccessRefused) and a server reads as
// the caller (Caller). "" sends none: the client's calls are anonymous.
// Default: the user that the URL's credentials name (PLAIN), or, once the
// broker refused that name and said the connection's (a login it names
// otherwise: an OAuth 2 token's subject), that one; none for a connection
// that logs in with its client certificate (EXTERNAL), whose user name the
// broker makes from the certificate as its settings say
// (ssl_cert_login_from), and which this option must then give. In a Local,
// the user its requests are served as; default none. Client only.
func WithUserID(user string) ClientOption {
	return clientOption(func(c *options) { c.userID.to(user) })
}

// WithAnonymousCallers says whether a server runs requests from anonymous
// callers: those without a user_id that the broker checked (Caller), such
// as a foreign peer's or an oslo.messaging Python client's. Refused, they
// fail with CodeUnauthenticated before any interceptor or method runs,
// describe.Request too, with a log line and a count
// (ServerStats.Unauthenticated). Default: true, they run. Server only.
func WithAnonymousCallers(allow bool) ServerOption {
	return serverOption(func(c *options) { c.refuseAnonymous = !allow })
}

// WithAuthorization makes a server check each request against p before
// any interceptor or its method runs (describe.Request too): a caller that
// p does not admit gets CodePermissionDenied, or CodeUnauthenticated when
// it is anonymous, with a log line and a count (ServerStats.Denied,
// ServerStats.Unauthenticated). Callers are checked before the method is
// looked up, so that a refused one learns nothing of what the server has.
// p is copied; its principals are checked here: one that cannot be read is
// a programming error, and panics; a method name that the server does not
// serve stops Serve with an error. Default: none, every caller may call
// every method. Server only.
func WithAuthorization(p Policy) ServerOption {
	if err := p.check(); err != nil {
		panic("amqprpc: WithAuthorization: " + err.Error())
	}
	q := p.clone() // the caller's map may change after; the server's does not
	return serverOption(func(c *options) { c.policy = q })
}

// WithURLs adds brokers of the same cluster to try, in turn, after the URL
// given to Dial or NewServer. A client or server connects again starting
// with the broker after the one whose connection it lost, so that a node
// that froze, and still takes TCP connections, is tried last. Default:
// none.
func WithURLs(urls ...string) Option {
	return option(func(c *options) { c.urls = append(c.urls, urls...) })
}

// WithReconnectBackoff sets the wait between attempts to reconnect after
// the connection is lost: first, doubling on each failed attempt up to
// most (at least first), with jitter. Values <= 0 are ignored. A server
// whose consumer the broker cancelled asks for its queue again the same
// way, but at least every 2 s, so that it consumes a queue whose node came
// back within about that. Default: DefaultReconnectMin (100ms) and
// DefaultReconnectMax (5s).
func WithReconnectBackoff(first, most time.Duration) Option {
	return option(func(c *options) {
		if first > 0 {
			c.reconnectMin = first
		}
		if most > 0 {
			c.reconnectMax = most
		}
	})
}

// WithMaxInFlight bounds how many requests a client has in flight at once;
// one more waits for a slot until its deadline. A call queued to be
// published with others keeps its slot until it leaves the queue, even once
// its caller gave up, so that the bound holds while the connection cannot
// take more. 0 means no bound, but for the calls queued to be published
// (4096). Default: 0. Client only.
func WithMaxInFlight(n int) ClientOption {
	return clientOption(func(c *options) { c.maxInFlight = max(n, 0) })
}

// WithDeduplication makes a server remember the last n requests it took,
// by id and reply path, and their replies: a request delivered again (after
// a lost connection, say) is answered with the remembered reply instead of
// running the method twice. It guards against redelivery to the same server
// process, not to another, and forgets the oldest replies when those it
// keeps pass 32 MiB. 0 turns it off. Default: 0. Server only.
func WithDeduplication(n int) ServerOption {
	return serverOption(func(c *options) { c.dedupe = max(n, 0) })
}

// WithMaxBodySize sets the largest request body, in bytes, that a server
// handles (a larger one is refused with CodeResourceExhausted) and that a
// client sends (ErrTooLarge). Values <= 0 are ignored.
// Default: DefaultMaxBodySize (16 MiB).
func WithMaxBodySize(n int) Option {
	return option(func(c *options) {
		if n > 0 {
			c.maxBody = n
		}
	})
}

// WithQueueType sets the kind of queue the topic's requests wait in:
// QueueClassic, a durable queue on one node, which keeps requests (never
// persistent) in memory; or QueueQuorum, replicated over a cluster's
// nodes, so that the topic survives the loss of a minority of them, and
// whose broker drops a request delivered more than WithDeliveryLimit
// times, but which writes each request to disk before delivering it: on
// one node, more than twice the latency of a call, and 60% of its
// throughput at 64 in flight (bench/RESULTS.md). Choose QueueQuorum where
// a topic must outlive a node. Servers of one topic must agree on it, and
// on the queue's arguments below: a server that finds the queue declared
// otherwise fails with ErrTopologyMismatch. Either is durable, as
// RabbitMQ 4.3 requires of a queue that is not exclusive. Default:
// DefaultQueueType (QueueClassic). Server only.
func WithQueueType(t QueueType) ServerOption {
	return serverOption(func(c *options) { c.queueType = t })
}

// WithQueueExpiry makes the broker delete the topic's queue, and the
// requests in it, once it has had no consumer, and no declaration, for d
// (the queue argument x-expires): for topics that come and go. 0 keeps it
// until it is deleted by hand. Default: 0. Server only.
func WithQueueExpiry(d time.Duration) ServerOption {
	return serverOption(func(c *options) { c.queueExpiry = max(d, 0) })
}

// WithDeliveryLimit sets how often a quorum topic queue delivers one
// request before the broker drops it, or dead-letters it
// (WithDeadLetterExchange): the cluster's bound on a request that keeps
// failing, besides each server's own quarantine (docs/PROTOCOL.md). A
// request is delivered again when a server dies or loses its connection
// with it in flight, or gives it back unserved. 0 leaves it to the broker
// (unlimited before RabbitMQ 4.0, 20 since). Default: DefaultDeliveryLimit
// (10). Server only; classic queues have no such limit.
func WithDeliveryLimit(n int) ServerOption {
	return serverOption(func(c *options) { c.deliveryLimit = max(n, 0) })
}

// WithDeadLetterExchange names the exchange that the broker publishes the
// topic's dead requests to: quarantined by a server, over the delivery
// limit, expired in the queue, or taken by a server past their deadline
// (a message of its own, served at least once: docs/PROTOCOL.md), or
// malformed (x-dead-letter-exchange). "" drops them. An exchange that
// routes them back to the topic's queue makes a loop that the broker does
// not break: name one of their own. Default: "". Server only.
func WithDeadLetterExchange(name string) ServerOption {
	return serverOption(func(c *options) { c.deadLetterExchange = name })
}

// WithQueueLimit bounds the requests waiting in the topic's queue for a
// server to take them: beyond n, the broker refuses new ones
// (x-max-length n, x-overflow reject-publish), and an amqprpc caller's
// call or cast fails at once with ErrOverloaded, instead of waiting its
// deadline out behind work the servers cannot do in time. The servers'
// replies say that the queue has a limit, and a client publishes its calls
// to the topic in confirm mode once one has (before, a refused call ends
// at its deadline; a client that gets no reply at all from an overloaded
// topic learns it at the first that is taken). A call that
// is taken waits for about n / (the calls the topic's servers finish a
// second) before it runs; the requests the servers have taken and run
// (their prefetch counts) are not counted, and a message that carries
// several calls (WithBatching) counts once. Callers that do not publish
// in confirm mode (most plain AMQP clients, oslo.messaging) see a refused
// request as no reply. Classic and quorum queues alike; 0 for no bound.
// Default: 0. Server only; not with WithOslo, whose queues are
// oslo.messaging's.
//
// The bound is an argument of the queue, which the broker fixes when the
// queue is declared: servers that disagree on it, or a limit added to a
// topic whose queue exists, stop with ErrTopologyMismatch, as for
// WithQueueType.
func WithQueueLimit(n int) ServerOption {
	return serverOption(func(c *options) { c.queueLimit = max(n, 0) })
}

// Profile presets the delivery guarantees of clients and servers, each of
// which costs throughput; WithRequestConfirms, WithReplyConfirms and
// WithAckAfterReply set them one by one, whichever order they are given
// in. bench/RESULTS.md measures each.
type Profile string

const (
	// Safe turns every guarantee on: calls confirmed by the broker (those
	// batched together, together), replies confirmed before their request
	// is acknowledged, requests acknowledged after their reply. What each
	// costs is measured in bench/RESULTS.md.
	Safe Profile = "safe"
	// Fast keeps acknowledgement after the reply, and with it at-least-once
	// serving, and drops the confirms of calls and replies: the reply of a
	// call already proves the broker took it, and a reply published before
	// its request's ack on the same channel is lost only if the ack is too.
	// Calls to a topic whose queue has a limit (WithQueueLimit) are the
	// exception: once a reply from there has said so, they go in confirm
	// mode, and one the broker refuses fails at once (ErrOverloaded); any
	// other call the broker refuses ends at its deadline. Casts are always
	// confirmed.
	Fast Profile = "fast"
	// DefaultProfile is the profile of a client or server given none.
	DefaultProfile = Fast
)

// WithProfile sets the delivery guarantees to those of p, but those set
// one by one. Default: DefaultProfile; with WithOslo, DefaultProfile but
// for acknowledgement, which comes when a request is taken, as
// oslo.messaging's servers do.
func WithProfile(p Profile) Option {
	return option(func(c *options) { c.profile.to(p) })
}

// guarantees returns the request confirms, reply confirms and
// acknowledgement after the reply of p; an unknown profile is Safe.
func (p Profile) guarantees() (requestConfirms, replyConfirms, ackAfterReply bool) {
	if p == Fast {
		return false, false, true
	}
	return true, true, true
}

// WithRequestConfirms sets whether a client publishes its calls in confirm
// mode, so that a call the broker refuses fails at once with ErrNacked
// rather than at its deadline. Calls confirmed so are batched as others
// are (WithBatching): the broker confirms, or refuses, a batch's calls
// together. Casts are always confirmed, and so are calls to a topic whose
// replies said that its queue has a limit (WithQueueLimit), batched or
// not. Default: as the profile says. Client only.
func WithRequestConfirms(on bool) ClientOption {
	return clientOption(func(c *options) { c.requestConfirms.to(on) })
}

// WithReplyConfirms sets whether a server waits for the broker to confirm a
// reply before it acknowledges the request, and requeues the request when
// the broker refuses the reply. Default: as the profile says. Server only.
func WithReplyConfirms(on bool) ServerOption {
	return serverOption(func(c *options) { c.replyConfirms.to(on) })
}

// WithAckAfterReply sets whether a server acknowledges each request after
// replying to it, so that a request in flight when the server dies is
// delivered again (at least once). Off, a server acknowledges each request
// when a handler takes it, before running it (at most once): a server that
// dies loses the requests it runs, up to its prefetch count, and the
// prefetch count still bounds what the broker hands it. Default: as the
// profile says; with WithOslo and no profile, off. Server only.
func WithAckAfterReply(on bool) ServerOption {
	return serverOption(func(c *options) { c.ackAfterReply.to(on) })
}
