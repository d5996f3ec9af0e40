// Package wire is the protocol seam of amqprpc: how requests and replies
// travel as AMQP messages, what each protocol declares, and how a server
// finds the method a request names. Two protocols implement it: amqprpc's
// own (Amqprpc) and oslo.messaging's (Oslo). A Protocol is a few small
// interfaces, and a protocol has only those it implements: oslo.messaging
// has no batches, amqprpc's protocol no heartbeats.
//
// The runtime sees requests and replies only through this package, and
// this package knows nothing of clients, servers or Go errors: a failure
// travels as a Failure, which the runtime maps to and from its errors.
package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Protocol is what clients and servers agree on with their peers, as a
// few small interfaces; a nil one is a part the protocol does not have.
type Protocol struct {
	// Name names the protocol in logs and errors.
	Name string
	Topology
	Requests
	Replies
	Finder
	// Batches, when not nil, carries several requests, or several replies,
	// in one message.
	Batches Batches
	// Heartbeats, when not nil, tells a caller that asked for them that
	// its request still runs.
	Heartbeats Heartbeats
	// Gathers says that a call may go to every server of a topic.
	Gathers bool
	// Streams, when not nil, carries streams: many items to one call.
	Streams Streams
}

// ErrNoStreams returns why p has no streams, or nil.
func (p *Protocol) ErrNoStreams() error {
	if p.Streams != nil {
		return nil
	}
	return fmt.Errorf("amqprpc: %s has no streams", p.Name)
}

// ErrNoGathers returns why p has no call to every server, or nil.
func (p *Protocol) ErrNoGathers() error {
	if p.Gathers {
		return nil
	}
	return fmt.Errorf("amqprpc: %s has no call to every server of a topic, only casts (Fanout)", p.Name)
}

// Topology is what a protocol declares: its exchanges and queues, their
// names and flags.
type Topology interface {
	// RequestExchange is the exchange that calls and casts go to.
	RequestExchange() Exchange
	// FanoutExchange is the exchange that delivers a request to every
	// server of topic. One that is auto-delete is declared before each
	// publication: it may have gone since.
	FanoutExchange(topic string) Exchange
	// ServerQueues are the queues of a server named server on topic: the
	// topic's, shared by its servers; the server's own, bound with the key
	// topic.server; and its queue on the fanout exchange. random is new
	// for each connection.
	ServerQueues(topic, server, random string) (shared, own, fanout Queue)
	// ReplyQueue is a client's queue for replies, on one connection.
	ReplyQueue(random string) Queue
}

// Requests carries one request a message.
type Requests interface {
	// EncodeRequest fills pub with r.
	EncodeRequest(pub *amqp.Publishing, r *Out) error
	// DecodeRequest reads a request from d into r. When it fails, it still
	// fills in what it could, so that a failure can find its way back.
	DecodeRequest(d *amqp.Delivery, r *In) error
	// ReturnedIDs returns the ids of the requests of a message the broker
	// returned unroutable.
	ReturnedIDs(r *amqp.Return) []string
}

// Replies carries replies: a server encodes them, a client reads them.
type Replies interface {
	// EncodeReply fills pub with the reply to request msgID, carrying
	// result or, when not nil, failure; server, when set, names the server
	// replying (to a request sent to every server).
	EncodeReply(pub *amqp.Publishing, msgID, server string, result any, failure *Failure) error
	// SplitReplies hands each the replies that message d carries, one or
	// several; a message that is not one is an error wrapping
	// ErrMalformed.
	SplitReplies(d *amqp.Delivery, each func(*Reply)) error
	// DecodeReply decodes the result of r into result (unless result is
	// nil), or returns the failure it carries; an error wraps ErrMalformed.
	DecodeReply(r *Reply, result any) (*Failure, error)
}

// Finder is how a server finds the method a request names.
type Finder interface {
	// Find returns nil when found, the service of the method r names (nil
	// if none has one of that name), may serve r; otherwise the failure to
	// answer with. all is every service the server has.
	Find(topic string, found *Service, all []*Service, r *In) *Failure
}

// Batches carries several requests of one caller to one topic in one
// message, and several replies to one caller in one message.
type Batches interface {
	// EncodeRequests fills pub with reqs, each encoded alone before (by
	// EncodeRequest), all wanting their replies at replyTo; id is the
	// batch's own, by which a server that does not read batches answers
	// it whole (see BatchID).
	EncodeRequests(pub *amqp.Publishing, id, replyTo string, reqs []BatchedRequest) error
	// IsBatch reports whether d carries several requests.
	IsBatch(d *amqp.Delivery) bool
	// SplitRequests returns the requests of d, a batch.
	SplitRequests(d *amqp.Delivery) ([]BatchedRequest, error)
	// DecodeBatched reads request e of batch d into r, as DecodeRequest.
	DecodeBatched(d *amqp.Delivery, e *BatchedRequest, r *In) error
	// EncodeReplies fills pub with replies to one caller that accepts them
	// together (In.Batch); one alone is encoded as EncodeReply makes it.
	EncodeReplies(pub *amqp.Publishing, replies []BatchedReply) error
}

// Heartbeats tells a caller, while its request runs, that it does.
type Heartbeats interface {
	// EncodeHeartbeat fills pub with a heartbeat to the caller of request
	// msgID, which asked for them (In.Heartbeat).
	EncodeHeartbeat(pub *amqp.Publishing, msgID string) error
}

// Out is a request as a client sends it.
type Out struct {
	MsgID    string
	Method   string
	Version  string // the interface version the method needs; "" for 1.0
	Args     any
	ReplyTo  string // "" for a cast: no reply is wanted
	Deadline time.Time
	// BatchReplies says the caller accepts its reply together with others
	// (Batches.EncodeReplies).
	BatchReplies bool
	Namespace    string            // the interface's namespace
	Context      map[string]any    // the caller's oslo.messaging request context
	Meta         map[string]string // the caller's metadata
	Heartbeat    time.Duration     // asks for heartbeats every half of it while the method runs
	// Stream, when not 0, asks for a stream of items, and is its window:
	// how many the caller takes before it grants more.
	Stream int
}

// In is a request as a server receives it.
type In struct {
	MsgID    string          // the id a reply must carry
	Method   string          // the method's wire name
	Version  string          // the interface version the caller needs; "" for 1.0
	Args     json.RawMessage // the arguments object, as sent
	Reply    Route           // where the reply goes; the zero Route when nowhere
	Deadline time.Time       // when the caller stops waiting; zero when it did not say
	Batch    bool            // the caller accepts its reply together with others
	// Namespace is the interface's namespace the request names, if any.
	Namespace string
	// Context is the caller's request context, if it sent one.
	Context map[string]any
	// Meta is the request's metadata, if it has any.
	Meta map[string]string
	// Heartbeat, when set, is how often the caller wants a heartbeat while
	// the method runs.
	Heartbeat time.Duration
	// UniqueID, when set, is the message's own id, new for each message
	// published, by which a server drops a message it was given twice.
	UniqueID string
	// Stream, when not 0, says the caller asked for a stream, and is its
	// window (Out.Stream).
	Stream int
	// User is the message's user_id property, which the broker checked
	// against the publishing connection's login; "" when it had none.
	// The runtime reads it from the delivery, whatever the protocol.
	User string
}

// BatchedRequest is one request of several published together.
type BatchedRequest struct {
	MsgID    string
	Deadline time.Time
	Meta     map[string]string
	Body     []byte // as EncodeRequest made it
}

// BatchedReply is one reply of several published together: the request's
// id and the body EncodeReply made for it.
type BatchedReply struct {
	MsgID string
	Body  []byte
}

// Route is where a server publishes a reply.
type Route struct {
	Exchange string
	Key      string
	// Declare says the exchange must be checked to be a classic caller's
	// reply exchange (direct, transient, auto-delete) before publishing.
	Declare bool
	// Direct says Key is a direct reply-to address (DirectReplyTo).
	Direct bool
}

// OK reports whether r goes somewhere.
func (r Route) OK() bool { return r.Key != "" }

// Batchable reports whether replies on r may share a message: only those
// to a queue.
func (r Route) Batchable() bool { return r.OK() && !r.Declare && !r.Direct }

// QueueRoute is the route of a reply to the queue named, through the
// default exchange, or to a direct reply-to address.
func QueueRoute(queue string) Route {
	return Route{Key: queue, Direct: IsDirectReplyTo(queue)}
}

// ReplyKind says what a reply is to its call.
type ReplyKind int

const (
	// Final ends the call.
	Final ReplyKind = iota
	// Beat says the server still runs the request.
	Beat
	// Provisional is a result that a final reply without one confirms
	// (oslo.messaging's servers before 4.0).
	Provisional
	// Items carries items of a stream (Streams); none is a beat.
	Items
	// End ends a stream, with its failure if it failed.
	End
)

// Reply is one reply as a client reads it.
type Reply struct {
	ID   string // the id of the request it answers
	Kind ReplyKind
	// Server names the server that sent it, when it says (a reply to a
	// request sent to every server).
	Server string
	// ReadsBatches says its server reads batches of requests.
	ReadsBatches bool
	// Bounded says its topic's queue refuses requests beyond a limit
	// (QueueLimitHeader).
	Bounded bool
	// Empty says it carries neither result nor failure.
	Empty bool
	// Seq, for a stream's message (Items, End), is its first item's
	// place, or, on its end, the number of items the stream sent; CreditTo
	// is the queue its caller sends credits to.
	Seq      int64
	CreditTo string
	// Body is the reply's body, as the protocol decodes it.
	Body []byte
	// read is what the protocol read of Body already, if anything, for
	// its DecodeReply.
	read any
}

// Failure is a server's error as it travels: what a method's error, or a
// request's failure, is on the wire.
type Failure struct {
	Code    string          `json:"code"`
	Message string          `json:"message"`
	Type    string          `json:"type,omitempty"`
	Detail  json.RawMessage `json:"detail,omitempty"`
	// Module and Class name a Python exception (oslo.messaging), and
	// Traceback is its traceback; amqprpc's protocol carries none.
	Module    string   `json:"-"`
	Class     string   `json:"-"`
	Traceback []string `json:"-"`
}

// Exchange is an exchange as a protocol declares it.
type Exchange struct {
	Name, Kind          string
	Durable, AutoDelete bool
}

// Queue is a queue as a protocol declares it.
type Queue struct {
	Name                           string
	Durable, AutoDelete, Exclusive bool
	Args                           amqp.Table
	// Mirrors says that the queue is declared as another system's peers
	// (oslo.messaging's) declare it, with the settings the user gave for
	// it, rather than by amqprpc's own rules.
	Mirrors bool
}

// Errors of what came off the wire. Each is ErrMalformed too.
var (
	ErrMalformed = errors.New("malformed message")
	ErrNotJSON   = malformed("body is not a JSON object")
	ErrNoMethod  = malformed(`no "method" in the body`)
	ErrBadArgs   = malformed(`"args" is not a JSON object`)
	ErrNotBatch  = malformed("body is not a JSON array of requests")
	// ErrUnreadableHeaders is a message whose headers no AMQP 0-9-1
	// library reads, replaced on the way in (amqpio.UnreadableHeader).
	ErrUnreadableHeaders = malformed("AMQP headers that no AMQP 0-9-1 client library reads")
)

// malformed is an error of a malformed message: errors.Is finds
// ErrMalformed in it.
type malformed string

func (e malformed) Error() string      { return string(e) }
func (malformed) Is(target error) bool { return target == ErrMalformed }

// MaxShortString is the longest AMQP short string: exchange and queue
// names, routing keys, header names, ids, reply_to.
const MaxShortString = 255
