package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqprpc/amqprpc/internal/amqpio"
)

// The amqprpc envelope, the one of OpenStack's original RPC:
//
//	request: {"method": "add", "args": {"v1": 2, "v2": 3}, "version": "1.1", "msg_id": "<id>"}
//	reply:   {"result": 5}  or  {"failure": {"code": "...", "message": "..."}}
//
// The version is left out when it is 1.0, and the msg_id from casts, which
// want no reply. A caller that adds "batch_replies": true accepts replies
// published together, several in one message of type BatchType:
//
//	[{"id": "<msg_id>", "reply": {"result": 5}}, {"id": "<msg_id>", "reply": {"failure": {...}}}]
//
// Such a caller may also send several requests to one topic in one message,
// of type RequestsType, each with its deadline in milliseconds since the
// Unix epoch (0 for none) and its metadata, if any, which a request alone
// carries as headers:
//
//	[{"id": "<msg_id>", "deadline": 1767225600000, "headers": {"traceparent": "..."}, "request": {"method": "add", ...}}, ...]
//
// The id is also the correlation_id property. A request that names a
// reply_to is answered there through the default exchange; one that only
// has a msg_id in its body is answered the old way, on a direct exchange
// named after the msg_id with the msg_id as routing key. A reply to a
// request sent to every server carries the server's name in the header
// ServerHeader.

// Message types and headers of amqprpc's protocol. A reply of type
// ReplyType or BatchType says that its server reads batches of requests:
// a client sends batches to a topic (or server) only once a reply from it
// has said so.
const (
	ReplyType    = "amqprpc.reply"
	BatchType    = "amqprpc.replies"
	RequestsType = "amqprpc.requests"
	// ServerHeader names the server replying to a request sent to every
	// server of a topic.
	ServerHeader = "amqprpc-server"
	// QueueLimitHeader, on a reply, says that the topic's queue refuses
	// requests beyond a number waiting (x-max-length, reject-publish): a
	// client publishes its calls to the topic in confirm mode from then
	// on, so that a refused one fails at once.
	QueueLimitHeader = "amqprpc-queue-limit"
	// DeadlineHeader carries the caller's deadline, in milliseconds since
	// the Unix epoch.
	DeadlineHeader = "amqprpc-deadline"
)

const contentTypeJSON = "application/json"

// AmqprpcTopology is what shapes amqprpc's topology (docs/PROTOCOL.md).
type AmqprpcTopology struct {
	// Exchange is the topic exchange requests go to.
	Exchange string
	// Quorum makes the topic's queue a quorum queue, with DeliveryLimit
	// (0 for the broker's).
	Quorum        bool
	DeliveryLimit int
	// Expiry, when set, is the topic queue's x-expires.
	Expiry time.Duration
	// DeadLetterExchange, when set, is its x-dead-letter-exchange.
	DeadLetterExchange string
	// MaxLength, when set, bounds the requests waiting in it
	// (x-max-length); the broker refuses a request beyond (x-overflow
	// reject-publish), which a publisher in confirm mode sees as a nack.
	MaxLength int
}

// Amqprpc returns amqprpc's own protocol, with batches, on topology t.
func Amqprpc(t AmqprpcTopology) *Protocol {
	return &Protocol{
		Name:     "amqprpc",
		Topology: amqprpcTopology(t),
		Requests: classic{},
		Replies:  classic{queueLimit: t.MaxLength},
		Finder:   amqprpcFinder{},
		Batches:  classic{queueLimit: t.MaxLength},
		Gathers:  true,
		Streams:  classic{},
	}
}

// Topology. Every queue amqprpc declares is durable or exclusive, and it
// uses no argument that RabbitMQ 4.x denies by default, so that every
// RabbitMQ from 3.10 to 4.3 accepts it as it comes:
//
//   - the topic's queue, <topic>, shared by its servers, is durable: a
//     quorum queue (replicated, with a delivery limit) or a classic one,
//     optionally deleted after a time unused, optionally bounded in
//     length, refusing requests beyond;
//   - a server's own queue, for requests sent to it by name, and its queue
//     on the topic's fanout exchange are exclusive to its connection, named
//     <topic>.<server>_<random> and <exchange>.fanout.<topic>_<random>;
//   - a client's reply queue is exclusive to its connection, named by the
//     broker.
type amqprpcTopology AmqprpcTopology

func (t amqprpcTopology) RequestExchange() Exchange {
	return Exchange{Name: t.Exchange, Kind: amqp.ExchangeTopic, Durable: true}
}

// FanoutExchange is not auto-delete: it must not vanish between a
// client's declaration and its publication, which would close the channel.
func (t amqprpcTopology) FanoutExchange(topic string) Exchange {
	return Exchange{Name: FanoutExchange(t.Exchange, topic), Kind: amqp.ExchangeFanout}
}

// FanoutExchange is the name of amqprpc's exchange that delivers a request
// to every server of topic: "<exchange>.fanout.<topic>".
func FanoutExchange(exchange, topic string) string { return exchange + ".fanout." + topic }

func (t amqprpcTopology) ServerQueues(topic, server, random string) (shared, own, fanout Queue) {
	return t.topicQueue(topic), instanceQueue(topic+"."+server, random), instanceQueue(FanoutExchange(t.Exchange, topic), random)
}

func (t amqprpcTopology) topicQueue(topic string) Queue {
	args := amqp.Table{}
	if t.Quorum {
		args["x-queue-type"] = "quorum"
		if t.DeliveryLimit > 0 {
			args["x-delivery-limit"] = int64(t.DeliveryLimit)
		}
	}
	if t.Expiry > 0 {
		args["x-expires"] = t.Expiry.Milliseconds()
	}
	if t.DeadLetterExchange != "" {
		args["x-dead-letter-exchange"] = t.DeadLetterExchange
	}
	if t.MaxLength > 0 {
		args["x-max-length"] = int64(t.MaxLength)
		args["x-overflow"] = "reject-publish"
	}
	return Queue{Name: topic, Durable: true, Args: args}
}

// instanceQueue is a queue of one server's connection: name, with a random
// end, exclusive, so that it goes with the connection and a new connection
// need not wait for the broker to notice the old one is gone.
func instanceQueue(name, random string) Queue {
	return Queue{Name: name + "_" + random, AutoDelete: true, Exclusive: true}
}

// ReplyQueue is named by the broker, exclusive to the connection, as its
// replies cannot outlive it.
func (amqprpcTopology) ReplyQueue(string) Queue { return Queue{AutoDelete: true, Exclusive: true} }

// amqprpcFinder dispatches on the method's name and the interface version.
type amqprpcFinder struct{}

func (amqprpcFinder) Find(topic string, found *Service, _ []*Service, r *In) *Failure {
	if found == nil {
		return &Failure{Code: "unimplemented", Message: fmt.Sprintf("topic %q has no method %s", topic, Clip(r.Method))}
	}
	if !Compatible(found.Version, r.Version) {
		return &Failure{Code: "unsupported_version", Message: fmt.Sprintf("%s on topic %q is version %s; %s needs %s",
			found.Name, topic, VersionOr1(found.Version), Clip(r.Method), VersionOr1(r.Version))}
	}
	return nil
}

// Service is what dispatch needs of an interface.
type Service struct {
	Name      string // its Go name
	Version   string // "major.minor"; "" for 1.0
	Namespace string // "" for none
}

// classic is the amqprpc envelope.
type classic struct {
	queueLimit int // the topic queue's, which replies say (QueueLimitHeader)
}

type classicRequest struct {
	Method       string          `json:"method"`
	Args         json.RawMessage `json:"args"`
	Version      string          `json:"version"`
	MsgID        string          `json:"msg_id"`
	BatchReplies bool            `json:"batch_replies"`
}

// classicRequestFields are classicRequest's members, in the order of
// scan's switch.
var classicRequestFields = []string{"method", "args", "version", "msg_id", "batch_replies"}

// scan decodes body into m, as json.Unmarshal would, when body is as
// amqprpc's peers write it (scan.go), and reports whether it was.
func (m *classicRequest) scan(body []byte) bool {
	return scanWhole(body, classicRequestFields, func(n int, v []byte) (ok bool) {
		switch n {
		case 0:
			m.Method, ok = plainString(v)
		case 1:
			m.Args, ok = v, true
		case 2:
			m.Version, ok = plainString(v)
		case 3:
			m.MsgID, ok = plainString(v)
		case 4:
			m.BatchReplies, ok = plainBool(v)
		}
		return ok
	})
}

type classicOutRequest struct {
	Method       string `json:"method"`
	Args         any    `json:"args"`
	Version      string `json:"version,omitempty"`
	MsgID        string `json:"msg_id,omitempty"`
	BatchReplies bool   `json:"batch_replies,omitempty"`
}

type classicResult struct {
	Result any `json:"result"`
}

type classicFailure struct {
	Failure *Failure `json:"failure"`
}

func (classic) EncodeRequest(pub *amqp.Publishing, r *Out) error {
	m := classicOutRequest{Method: r.Method, Args: r.Args, Version: r.Version}
	if r.ReplyTo != "" {
		m.MsgID = r.MsgID
		m.BatchReplies = r.BatchReplies
	}
	body, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode arguments of %q: %w", r.Method, err)
	}
	pub.ContentType = contentTypeJSON
	pub.CorrelationId = r.MsgID
	pub.ReplyTo = r.ReplyTo
	pub.Body = body
	if !r.Deadline.IsZero() {
		pub.Headers = amqp.Table{DeadlineHeader: r.Deadline.UnixMilli()}
	}
	if r.Stream > 0 {
		if pub.Headers == nil {
			pub.Headers = amqp.Table{}
		}
		pub.Headers[StreamHeader] = int64(r.Stream)
	}
	pub.Headers = PutMetadata(pub.Headers, r.Meta)
	return nil
}

func (f classic) DecodeRequest(d *amqp.Delivery, r *In) error {
	r.MsgID = d.CorrelationId
	if ms, ok := Integer(d.Headers[DeadlineHeader]); ok {
		r.Deadline = time.UnixMilli(ms)
	}
	if n, ok := Integer(d.Headers[StreamHeader]); ok {
		r.Stream = int(min(max(n, 1), maxWindow)) // asked for: at least one, and at most what a server holds
	}
	err := f.decodeBody(d.ReplyTo, d.Body, r)
	r.Meta = MetadataOf(d.Headers)
	if why, ok := unreadable(d); ok {
		return fmt.Errorf("%w: %v", ErrUnreadableHeaders, why)
	}
	return err
}

// Integer returns v, a header's value, as an int64 if it is an integer of
// any width that AMQP tables carry, as other clients write them.
func Integer(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case int32:
		return int64(n), true
	case int16:
		return int64(n), true
	case int8:
		return int64(n), true
	case uint32:
		return int64(n), true
	case uint16:
		return int64(n), true
	case uint8:
		return int64(n), true
	}
	return 0, false
}

func (f classic) DecodeBatched(d *amqp.Delivery, e *BatchedRequest, r *In) error {
	r.MsgID, r.Deadline, r.Meta = e.MsgID, e.Deadline, e.Meta
	return f.decodeBody(d.ReplyTo, e.Body, r)
}

// decodeBody decodes a request's body into r, whose reply goes to replyTo
// unless that is empty.
func (classic) decodeBody(replyTo string, body []byte, r *In) error {
	if replyTo != "" {
		r.Reply = QueueRoute(replyTo)
	}
	var m classicRequest
	if !m.scan(body) {
		m = classicRequest{}
		if err := json.Unmarshal(body, &m); err != nil {
			return fmt.Errorf("%w: %v", ErrNotJSON, err)
		}
	}
	if r.MsgID == "" {
		r.MsgID = m.MsgID
	}
	if !r.Reply.OK() && m.MsgID != "" {
		r.Reply = Route{Exchange: m.MsgID, Key: m.MsgID, Declare: true}
	}
	if m.Method == "" {
		return ErrNoMethod
	}
	r.Method = m.Method
	r.Version = m.Version
	r.Batch = m.BatchReplies
	if a := bytes.TrimLeft(m.Args, " \t\r\n"); len(a) > 0 && a[0] != '{' && !bytes.Equal(a, []byte("null")) {
		return ErrBadArgs
	}
	r.Args = m.Args
	return nil
}

func (c classic) EncodeReply(pub *amqp.Publishing, msgID, server string, result any, failure *Failure) error {
	var body []byte
	var err error
	if failure != nil {
		body, err = json.Marshal(classicFailure{failure})
	} else {
		body, err = json.Marshal(classicResult{result})
	}
	if err != nil {
		return err
	}
	pub.ContentType = contentTypeJSON
	pub.Type = ReplyType
	pub.CorrelationId = msgID
	pub.Body = body
	if server != "" {
		pub.Headers = amqp.Table{ServerHeader: server}
	}
	c.sayLimit(pub)
	return nil
}

// sayLimit marks pub, a reply, with the topic queue's limit, if any.
func (c classic) sayLimit(pub *amqp.Publishing) {
	if c.queueLimit <= 0 {
		return
	}
	if pub.Headers == nil {
		pub.Headers = amqp.Table{}
	}
	pub.Headers[QueueLimitHeader] = int64(c.queueLimit)
}

type classicRequestEntry struct {
	ID       string            `json:"id"`
	Deadline int64             `json:"deadline"`
	Headers  map[string]string `json:"headers"`
	Request  json.RawMessage   `json:"request"`
}

// classicRequestEntryFields are classicRequestEntry's members, in the
// order of scanRequestEntries's switch.
var classicRequestEntryFields = []string{"id", "deadline", "headers", "request"}

// scanRequestEntries decodes a batch of requests, as json.Unmarshal would,
// when body is as amqprpc's clients write it (scan.go), and reports
// whether it was.
func scanRequestEntries(body []byte) ([]classicRequestEntry, bool) {
	return scanArray(body, classicRequestEntryFields, func(e *classicRequestEntry, n int, v []byte) (ok bool) {
		switch n {
		case 0:
			e.ID, ok = plainString(v)
		case 1:
			e.Deadline, ok = plainInt(v)
		case 2:
			e.Headers, ok = plainHeaders(v)
		case 3:
			e.Request, ok = v, true
		}
		return ok
	})
}

// plainHeaders returns the map of strings the JSON object v is, when its
// values are plain strings.
func plainHeaders(v []byte) (map[string]string, bool) {
	h := map[string]string{}
	_, ok := eachMember(v, 0, func(key, v []byte) bool {
		k, ok := plainString(key)
		s, ok2 := plainString(v)
		h[k] = s
		return ok && ok2
	}, 3)
	return h, ok
}

// BatchID is the correlation_id of a batch of requests: a server that does
// not read batches answers one as a request it cannot read, with that id,
// which tells the client to send the batch's requests again one by one.
func BatchID(id string) string { return "batch:" + id }

// IsBatchID reports whether id is that of a batch (BatchID).
func IsBatchID(id string) bool { return strings.HasPrefix(id, "batch:") }

func (classic) EncodeRequests(pub *amqp.Publishing, id, replyTo string, reqs []BatchedRequest) error {
	n := 2
	var latest time.Time
	for _, r := range reqs {
		n += len(r.MsgID) + len(r.Body) + len(`{"id":"","deadline":1767225600000,"request":},`)
		if r.Deadline.After(latest) {
			latest = r.Deadline
		}
	}
	body := make([]byte, 0, n)
	body = append(body, '[')
	for i, r := range reqs {
		body = appendEntryID(body, i, r.MsgID)
		body = append(body, `,"deadline":`...)
		var ms int64
		if !r.Deadline.IsZero() {
			ms = r.Deadline.UnixMilli()
		}
		body = strconv.AppendInt(body, ms, 10)
		body = appendMetadata(body, r.Meta)
		body = append(body, `,"request":`...)
		body = append(body, r.Body...)
		body = append(body, '}')
	}
	body = append(body, ']')
	pub.ContentType = contentTypeJSON
	pub.Type = RequestsType
	pub.CorrelationId = id
	pub.ReplyTo = replyTo
	pub.Body = body
	if !latest.IsZero() {
		pub.Headers = amqp.Table{DeadlineHeader: latest.UnixMilli()}
		pub.Expiration = Expiration(time.Until(latest))
	}
	return nil
}

// Expiration renders ttl as an AMQP per-message TTL: whole milliseconds,
// rounded up, at least 1.
func Expiration(ttl time.Duration) string {
	ms := (ttl + time.Millisecond - 1) / time.Millisecond
	return strconv.FormatInt(int64(max(ms, 1)), 10)
}

func (classic) ReturnedIDs(r *amqp.Return) []string {
	if r.Type != RequestsType {
		return []string{r.CorrelationId}
	}
	var entries []classicRequestEntry
	json.Unmarshal(r.Body, &entries) // our own: it decodes
	ids := make([]string, len(entries))
	for i, e := range entries {
		ids[i] = e.ID
	}
	return ids
}

func (classic) IsBatch(d *amqp.Delivery) bool { return d.Type == RequestsType }

// SplitRequests returns the requests of batch d, each with the metadata of
// its entry but the keys that are not metadata (Reserved, or too long for
// a header name).
func (classic) SplitRequests(d *amqp.Delivery) ([]BatchedRequest, error) {
	entries, ok := scanRequestEntries(d.Body)
	if !ok {
		entries = nil
		if err := json.Unmarshal(d.Body, &entries); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrNotBatch, err)
		}
	}
	reqs := make([]BatchedRequest, len(entries))
	for i, e := range entries {
		for k := range e.Headers {
			if !metadataKey(k) {
				delete(e.Headers, k)
			}
		}
		reqs[i] = BatchedRequest{MsgID: e.ID, Meta: e.Headers, Body: e.Request}
		if e.Deadline > 0 {
			reqs[i].Deadline = time.UnixMilli(e.Deadline)
		}
	}
	return reqs, nil
}

func (c classic) EncodeReplies(pub *amqp.Publishing, replies []BatchedReply) error {
	c.sayLimit(pub)
	if len(replies) == 1 {
		pub.ContentType = contentTypeJSON
		pub.Type = ReplyType
		pub.CorrelationId = replies[0].MsgID
		pub.Body = replies[0].Body
		return nil
	}
	n := 2
	for _, r := range replies {
		n += len(r.MsgID) + len(r.Body) + len(`{"id":"","reply":},`)
	}
	body := make([]byte, 0, n)
	body = append(body, '[')
	for i, r := range replies {
		body = appendEntryID(body, i, r.MsgID)
		body = append(body, `,"reply":`...)
		body = append(body, r.Body...)
		body = append(body, '}')
	}
	body = append(body, ']')
	pub.ContentType = contentTypeJSON
	pub.Type = BatchType
	pub.Body = body
	return nil
}

// appendEntryID opens the i-th object of a batch's array with its id.
func appendEntryID(b []byte, i int, id string) []byte {
	if i > 0 {
		b = append(b, ',')
	}
	b = append(b, `{"id":`...)
	return AppendJSONString(b, id)
}

type classicBatchEntry struct {
	ID    string          `json:"id"`
	Reply json.RawMessage `json:"reply"`
}

// classicBatchEntryFields are classicBatchEntry's members, in the order
// of scanReplyEntries's switch.
var classicBatchEntryFields = []string{"id", "reply"}

// scanReplyEntries decodes a batch of replies, as json.Unmarshal would,
// when body is as amqprpc's servers write it (scan.go), and reports
// whether it was.
func scanReplyEntries(body []byte) ([]classicBatchEntry, bool) {
	return scanArray(body, classicBatchEntryFields, func(e *classicBatchEntry, n int, v []byte) (ok bool) {
		switch n {
		case 0:
			e.ID, ok = plainString(v)
		case 1:
			e.Reply, ok = v, true
		}
		return ok
	})
}

func (classic) SplitReplies(d *amqp.Delivery, each func(*Reply)) error {
	readsBatches := d.Type == ReplyType || d.Type == BatchType
	limit, _ := Integer(d.Headers[QueueLimitHeader])
	bounded := limit > 0
	if d.Type != BatchType {
		server, _ := d.Headers[ServerHeader].(string)
		r := Reply{ID: d.CorrelationId, ReadsBatches: readsBatches, Bounded: bounded, Server: server, Body: d.Body}
		streamReply(d, &r)
		each(&r)
		return nil
	}
	entries, ok := scanReplyEntries(d.Body)
	if !ok {
		entries = nil
		if err := json.Unmarshal(d.Body, &entries); err != nil {
			return fmt.Errorf("%w: %v", malformed("body is not a JSON array of replies"), err)
		}
	}
	for _, e := range entries {
		each(&Reply{ID: e.ID, ReadsBatches: true, Bounded: bounded, Body: e.Reply})
	}
	return nil
}

// classicReplyInto is a reply decoded in one pass: Result holds a pointer
// to where the result goes.
type classicReplyInto struct {
	Result  any      `json:"result"`
	Failure *Failure `json:"failure"`
}

func (classic) DecodeReply(r *Reply, result any) (*Failure, error) {
	// One pass: the result decodes straight into result, which the
	// interface field holds (or is skipped when result is nil).
	m := classicReplyInto{Result: result}
	if result == nil {
		m.Result = new(json.RawMessage)
	}
	err := json.Unmarshal(r.Body, &m)
	if m.Failure != nil {
		return m.Failure, nil
	}
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &typeErr) && strings.HasPrefix(typeErr.Field, "result"):
		return nil, fmt.Errorf("%w: %v", malformed("result"), err)
	case err != nil:
		return nil, fmt.Errorf("%w: %v", malformed("reply"), err)
	}
	return nil, nil
}

// unreadable returns why amqpio replaced the headers of d, if it did.
func unreadable(d *amqp.Delivery) (any, bool) {
	why, ok := d.Headers[amqpio.UnreadableHeader]
	return why, ok
}

// Clip returns s, quoted, or its first bytes and how long it was, for an
// error message or a log line that quotes what a peer sent.
func Clip(s string) string {
	const most = 64
	if len(s) <= most {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%q... (%d bytes)", s[:most], len(s))
}

// ClipMessage bounds an error message made from what a peer sent.
func ClipMessage(msg string) string {
	const most = 256
	if len(msg) <= most {
		return msg
	}
	return fmt.Sprintf("%s... (%d bytes)", msg[:most], len(msg))
}
