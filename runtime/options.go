package runtime

import (
	"log/slog"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Defaults of the options below.
const (
	// DefaultExchange is the topic exchange requests are published to.
	DefaultExchange = "amqprpc"
	// DefaultTimeout bounds a call whose context has no deadline.
	DefaultTimeout = 30 * time.Second
	// DefaultPrefetch is how many requests a server handles at once.
	DefaultPrefetch = 64
	// DefaultMaxBodySize is the largest request body a server accepts and
	// a client sends: 16 MiB.
	DefaultMaxBodySize = 16 << 20
	// DefaultReconnectMin and DefaultReconnectMax bound the wait between
	// attempts to reconnect: it starts at the first and doubles up to the
	// second.
	DefaultReconnectMin = 100 * time.Millisecond
	DefaultReconnectMax = 5 * time.Second
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
type (
	ClientOption interface {
		LocalOption
		applyClient(*config)
	}
	ServerOption interface {
		LocalOption
		applyServer(*config)
	}
	Option interface {
		ClientOption
		ServerOption
	}
	LocalOption interface{ applyLocal(*config) }
)

// clientOption, serverOption and option are the options of one side, of
// the other, and of both.
type (
	clientOption func(*config)
	serverOption func(*config)
	option       func(*config)
)

func (o clientOption) applyClient(c *config) { o(c) }
func (o clientOption) applyLocal(c *config)  { o(c) }
func (o serverOption) applyServer(c *config) { o(c) }
func (o serverOption) applyLocal(c *config)  { o(c) }
func (o option) applyClient(c *config)       { o(c) }
func (o option) applyServer(c *config)       { o(c) }
func (o option) applyLocal(c *config)        { o(c) }

type config struct {
	exchange     string
	timeout      time.Duration
	prefetch     int
	logger       *slog.Logger
	amqpConfig   amqp.Config
	serverName   string
	urls         []string // brokers to try after the first
	reconnectMin time.Duration
	reconnectMax time.Duration
	maxInFlight  int
	dedupe       int
	maxBody      int
	noBatching   bool
	// The topic's queue (see topology.go).
	queueType          QueueType
	queueExpiry        time.Duration
	deliveryLimit      int
	deadLetterExchange string
	serverInterceptors []ServerInterceptor
	clientInterceptors []ClientInterceptor
	// oslo, when set, makes the protocol oslo.messaging's (WithOslo).
	oslo        *OsloConfig
	callMonitor time.Duration
	// The delivery guarantees (see Profile).
	requestConfirms bool
	replyConfirms   bool
	ackAfterReply   bool
}

// newConfig returns the defaults, changed by apply.
func newConfig(apply func(*config)) config {
	c := config{
		exchange:      DefaultExchange,
		timeout:       DefaultTimeout,
		prefetch:      DefaultPrefetch,
		logger:        slog.Default(),
		reconnectMin:  DefaultReconnectMin,
		reconnectMax:  DefaultReconnectMax,
		maxBody:       DefaultMaxBodySize,
		queueType:     DefaultQueueType,
		deliveryLimit: DefaultDeliveryLimit,
	}
	setProfile(&c, DefaultProfile)
	apply(&c)
	return c
}

func clientConfig(opts []ClientOption) config {
	return newConfig(func(c *config) {
		for _, o := range opts {
			o.applyClient(c)
		}
	})
}

func serverConfig(opts []ServerOption) config {
	return newConfig(func(c *config) {
		for _, o := range opts {
			o.applyServer(c)
		}
	})
}

func localConfig(opts []LocalOption) config {
	return newConfig(func(c *config) {
		for _, o := range opts {
			o.applyLocal(c)
		}
	})
}

// WithExchange sets the name of the topic exchange that requests are
// published to (client) and that the topic's queue is bound to (server).
// Clients and servers of one topic must agree on it. The exchange is
// declared durable. Default: DefaultExchange ("amqprpc").
func WithExchange(name string) Option {
	return option(func(c *config) { c.exchange = name })
}

// WithTimeout sets how long a client's call may take when its context has
// no deadline. A context deadline, when present, always wins.
// Values <= 0 are ignored. Default: DefaultTimeout (30s). Client only.
func WithTimeout(d time.Duration) ClientOption {
	return clientOption(func(c *config) {
		if d > 0 {
			c.timeout = d
		}
	})
}

// WithBatching sets whether a client sends calls that come close together
// for one topic several to a message, and accepts its replies several to a
// message (docs/PROTOCOL.md). Calls go several to a message only to a topic
// whose replies said that its servers read them, as amqprpc servers' do, and
// only without request confirms. Off, each call and each reply is a message
// of its own. Default: on. Client only: servers answer in batches the calls
// that accept it.
func WithBatching(on bool) ClientOption {
	return clientOption(func(c *config) { c.noBatching = !on })
}

// WithPrefetch sets how many messages a server takes from each of its
// three queues (the topic's, its own, its fanout queue) before
// acknowledging them, and how many handlers run at once, or up to twice as
// many when requests come in batches (docs/PROTOCOL.md). Values <= 0 are
// ignored. Default: DefaultPrefetch (64). Server only.
func WithPrefetch(n int) ServerOption {
	return serverOption(func(c *config) {
		if n > 0 {
			c.prefetch = n
		}
	})
}

// WithLogger sets the logger for events that no caller sees, such as a
// malformed request rejected by a server or a reply nobody waits for.
// Default: slog.Default().
func WithLogger(l *slog.Logger) Option {
	return option(func(c *config) {
		if l != nil {
			c.logger = l
		}
	})
}

// WithAMQPConfig sets the amqp091-go configuration used to dial the broker:
// TLS, heartbeat, SASL mechanisms, connection properties. Default: the zero
// amqp.Config, which gives amqp091-go's defaults.
func WithAMQPConfig(cfg amqp.Config) Option {
	return option(func(c *config) { c.amqpConfig = cfg })
}

// WithServerName sets the server's name: a client reaches this server alone
// by naming it (Target.Server; generated clients: ToServer), through the
// routing key <topic>.<name>, and its replies to a Gather carry it. Servers
// of one topic should have different names: two of one name would each
// receive the requests sent to it. Default: the host name. Server only.
func WithServerName(name string) ServerOption {
	return serverOption(func(c *config) { c.serverName = name })
}

// WithURLs adds brokers of the same cluster to try, in turn, after the URL
// given to Dial or NewServer, when connecting and when reconnecting.
// Default: none.
func WithURLs(urls ...string) Option {
	return option(func(c *config) { c.urls = append(c.urls, urls...) })
}

// WithReconnectBackoff sets the wait between attempts to reconnect after
// the connection is lost: first, doubling on each failed attempt up to
// most, with jitter. Values <= 0 are ignored. Default: DefaultReconnectMin
// (100ms) and DefaultReconnectMax (5s).
func WithReconnectBackoff(first, most time.Duration) Option {
	return option(func(c *config) {
		if first > 0 {
			c.reconnectMin = first
		}
		if most > 0 {
			c.reconnectMax = max(most, c.reconnectMin)
		}
	})
}

// WithMaxInFlight bounds how many requests a client has in flight at once;
// one more waits for a slot until its deadline. A call queued to be
// published with others keeps its slot until it leaves the queue, even once
// its caller gave up, so that the bound holds while the connection cannot
// take more. 0 means no bound. Default: 0. Client only.
func WithMaxInFlight(n int) ClientOption {
	return clientOption(func(c *config) { c.maxInFlight = max(n, 0) })
}

// WithDeduplication makes a server remember the last n requests it took,
// by id and reply path, and their replies: a request delivered again (after
// a lost connection, say) is answered with the remembered reply instead of
// running the method twice. It guards against redelivery to the same server
// process, not to another, and forgets the oldest replies when those it
// keeps pass 32 MiB. 0 turns it off. Default: 0. Server only.
func WithDeduplication(n int) ServerOption {
	return serverOption(func(c *config) { c.dedupe = max(n, 0) })
}

// WithMaxBodySize sets the largest request body, in bytes, that a server
// handles (a larger one is refused with CodeResourceExhausted) and that a
// client sends (ErrTooLarge). Values <= 0 are ignored.
// Default: DefaultMaxBodySize (16 MiB).
func WithMaxBodySize(n int) Option {
	return option(func(c *config) {
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
	return serverOption(func(c *config) { c.queueType = t })
}

// WithQueueExpiry makes the broker delete the topic's queue, and the
// requests in it, once it has had no consumer, and no declaration, for d
// (the queue argument x-expires): for topics that come and go. 0 keeps it
// until it is deleted by hand. Default: 0. Server only.
func WithQueueExpiry(d time.Duration) ServerOption {
	return serverOption(func(c *config) { c.queueExpiry = max(d, 0) })
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
	return serverOption(func(c *config) { c.deliveryLimit = max(n, 0) })
}

// WithDeadLetterExchange names the exchange that the broker publishes the
// topic's dead requests to: quarantined by a server, over the delivery
// limit, or expired in the queue (x-dead-letter-exchange). "" drops them.
// Default: "". Server only.
func WithDeadLetterExchange(name string) ServerOption {
	return serverOption(func(c *config) { c.deadLetterExchange = name })
}

// Profile presets the delivery guarantees of clients and servers, each of
// which costs throughput; WithRequestConfirms, WithReplyConfirms and
// WithAckAfterReply set them one by one. bench/RESULTS.md measures each.
type Profile string

const (
	// Safe turns every guarantee on: requests confirmed by the broker
	// (ErrNacked at once), replies confirmed before their request is
	// acknowledged, requests acknowledged after their reply. Calls
	// confirmed one by one are not batched: under load, Safe serves less
	// than half the calls of Fast (bench/RESULTS.md).
	Safe Profile = "safe"
	// Fast keeps acknowledgement after the reply, and with it at-least-once
	// serving, and drops the confirms of calls and replies: the reply of a
	// call already proves the broker took it, and a reply published before
	// its request's ack on the same channel is lost only if the ack is too.
	// A call the broker refuses then ends at its deadline rather than at
	// once with ErrNacked. Casts are always confirmed.
	Fast Profile = "fast"
	// DefaultProfile is the profile of a client or server given none.
	DefaultProfile = Fast
)

// WithProfile sets the delivery guarantees to those of p.
// Default: DefaultProfile.
func WithProfile(p Profile) Option {
	return option(func(c *config) { setProfile(c, p) })
}

func setProfile(c *config, p Profile) {
	switch p {
	case Fast:
		c.requestConfirms, c.replyConfirms, c.ackAfterReply = false, false, true
	default:
		c.requestConfirms, c.replyConfirms, c.ackAfterReply = true, true, true
	}
}

// WithRequestConfirms sets whether a client publishes its calls in confirm
// mode, so that a call the broker refuses fails at once with ErrNacked
// rather than at its deadline. Confirmed calls go one to a message, never
// batched (WithBatching). Casts are always confirmed. Client only.
func WithRequestConfirms(on bool) ClientOption {
	return clientOption(func(c *config) { c.requestConfirms = on })
}

// WithReplyConfirms sets whether a server waits for the broker to confirm a
// reply before it acknowledges the request, and requeues the request when
// the broker refuses the reply. Server only.
func WithReplyConfirms(on bool) ServerOption {
	return serverOption(func(c *config) { c.replyConfirms = on })
}

// WithAckAfterReply sets whether a server acknowledges each request after
// replying to it, so that a request in flight when the server dies is
// delivered again (at least once). Off, a server acknowledges each request
// when a handler takes it, before running it (at most once): a server that
// dies loses the requests it runs, up to its prefetch count, and the
// prefetch count still bounds what the broker hands it. Server only.
func WithAckAfterReply(on bool) ServerOption {
	return serverOption(func(c *config) { c.ackAfterReply = on })
}
