package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
)

// wireFormat is the seam between the runtime and the layout of messages on
// the wire: which body fields and AMQP properties carry a request and its
// reply, and where a reply goes. The client and the server see requests and
// replies only through it, so another envelope can be added beside the
// classic one without touching the call and serve paths.
type wireFormat interface {
	// encodeRequest fills pub with the request r.
	encodeRequest(pub *amqp.Publishing, r *outRequest) error
	// encodeRequests fills pub with several requests of one caller to one
	// topic, each encoded alone before (by encodeRequest), all wanting
	// their replies at replyTo; it expires with the latest of them.
	encodeRequests(pub *amqp.Publishing, replyTo string, reqs []batchedRequest) error
	// returnedIDs returns the ids of the requests of a message the broker
	// returned.
	returnedIDs(r *amqp.Return) []string
	// decodeRequest reads a request from d into r. When it fails it still
	// fills in what it could, so that an error reply can find its way back.
	decodeRequest(d *amqp.Delivery, r *inRequest) error
	// isBatch reports whether d carries several requests.
	isBatch(d *amqp.Delivery) bool
	// splitRequests returns the requests of d, a batch. A malformed batch
	// is an error.
	splitRequests(d *amqp.Delivery) ([]batchedRequest, error)
	// decodeBatched reads request e of batch d into r, as decodeRequest.
	decodeBatched(d *amqp.Delivery, e *batchedRequest, r *inRequest) error
	// encodeReply fills pub with the reply to request msgID, carrying
	// either result or, when it is not nil, failure; server, when set, is
	// the name of the server replying.
	encodeReply(pub *amqp.Publishing, msgID, server string, result any, failure *Error) error
	// encodeReplies fills pub with the replies to several requests of one
	// caller that accepts them together (batchReplies); one reply is
	// encoded as encodeReply would.
	encodeReplies(pub *amqp.Publishing, replies []batchedReply) error
	// splitReplies reports whether d carries several replies and, if it
	// does, hands each to each as a reply of its own, as encodeReply makes
	// them. A malformed batch is an error.
	splitReplies(d *amqp.Delivery, each func(reply *amqp.Delivery)) (bool, error)
	// replyID returns the id of the request that d answers.
	replyID(d *amqp.Delivery) string
	// replyServer returns the name of the server that sent reply d, if
	// it says.
	replyServer(d *amqp.Delivery) string
	// acceptsBatches reports whether reply d says that its server reads
	// several requests in a message.
	acceptsBatches(d *amqp.Delivery) bool
	// decodeReply decodes the result of reply d into result (unless result
	// is nil), or returns the *Error it carries.
	decodeReply(d *amqp.Delivery, result any) error
}

// outRequest is a request as a client sends it.
type outRequest struct {
	msgID    string
	method   string
	version  string // the interface version the method needs; "" for 1.0
	args     any
	replyTo  string // "" for a cast: no reply is wanted
	deadline time.Time
	// batchReplies says the caller accepts its reply together with
	// others (see encodeReplies).
	batchReplies bool
	namespace    string         // the interface's namespace (ServiceDesc.Namespace)
	context      map[string]any // the caller's request context (WithOsloContext)
	meta         Metadata       // the caller's metadata (WithMetadata)
	heartbeat    time.Duration  // asks for heartbeats every half of it while the method runs
}

// inRequest is a request as a server receives it.
type inRequest struct {
	msgID    string          // the id a reply must carry
	method   string          // wire name of the method
	version  string          // the interface version the caller needs; "" for 1.0
	args     json.RawMessage // the arguments object, as sent
	reply    route           // where the reply goes; the zero route when nowhere
	deadline time.Time       // when the caller stops waiting; zero when it did not say
	batch    bool            // the caller accepts its reply together with others
	// namespace is the interface's namespace the request names, if any.
	namespace string
	// context is the caller's request context, if it sent one.
	context map[string]any
	// meta is the request's metadata, if it has any.
	meta Metadata
	// heartbeat, when set, is how often the caller wants a heartbeat
	// while the method runs.
	heartbeat time.Duration
	// uniqueID, when set, is the request's own id, new for each message,
	// by which a server drops a message it was given twice.
	uniqueID string
}

// batchedRequest is one request of several published together: its id,
// deadline and body.
type batchedRequest struct {
	msgID    string
	deadline time.Time
	meta     Metadata
	body     []byte
}

// batchedReply is one reply of several published together: the request's
// id and the body encodeReply made for it.
type batchedReply struct {
	msgID string
	body  []byte
}

// route is where a server publishes a reply.
type route struct {
	exchange string
	key      string
	// declare says the exchange must be declared (direct, auto-delete)
	// before publishing, as classic callers expect.
	declare bool
	// direct says key is a direct reply-to address, which only the broker
	// can judge (see directReplies).
	direct bool
}

func (r route) ok() bool { return r.key != "" }

// queueRoute is the route of a reply to the queue named, through the
// default exchange, or to a direct reply-to address.
func queueRoute(queue string) route {
	return route{key: queue, direct: strings.HasPrefix(queue, directReplyTo)}
}

// batchable reports whether replies to r may share a message: only those
// to a queue.
func (r route) batchable() bool { return r.ok() && !r.declare && !r.direct }

const contentTypeJSON = "application/json"

// classic is the amqprpc envelope, the one of OpenStack's original RPC:
//
//	request: {"method": "add", "args": {"v1": 2, "v2": 3}, "version": "1.1", "msg_id": "<id>"}
//	reply:   {"result": 5}  or  {"failure": {"code": "...", "message": "..."}}
//
// The version is left out when it is 1.0, and the msg_id from casts, which
// want no reply. A caller that adds "batch_replies": true accepts replies
// published together, several in one message of type batchType:
//
//	[{"id": "<msg_id>", "reply": {"result": 5}}, {"id": "<msg_id>", "reply": {"failure": {...}}}]
//
// Such a caller may also send several requests to one topic in one message,
// of type requestsType, each with its deadline in milliseconds since the
// Unix epoch (0 for none) and its metadata, if any, which a request alone
// carries as headers:
//
//	[{"id": "<msg_id>", "deadline": 1767225600000, "headers": {"traceparent": "..."}, "request": {"method": "add", ...}}, ...]
//
// The id is also the correlation_id property. A request that
// names a reply_to is answered there through the default exchange; one that
// only has a msg_id in its body is answered the old way, on a direct
// exchange named after the msg_id with the msg_id as routing key. A reply
// to a request sent to every server carries the server's name in the
// header serverHeader.
type classic struct{}

// serverHeader is the reply header that names the server replying to a
// request sent to every server of a topic.
const serverHeader = "amqprpc-server"

// batchType is the type property of a message that carries several
// replies, replyType that of one reply alone, and requestsType that of a
// message that carries several requests. A reply of either type says that
// its server reads batches of requests: a client sends batches to a topic
// (or server) only once a reply from it has said so.
const (
	batchType    = "amqprpc.replies"
	replyType    = "amqprpc.reply"
	requestsType = "amqprpc.requests"
)

// deadlineHeader is the request header that carries the caller's deadline,
// in milliseconds since the Unix epoch.
const deadlineHeader = "amqprpc-deadline"

type classicRequest struct {
	Method       string          `json:"method"`
	Args         json.RawMessage `json:"args"`
	Version      string          `json:"version"`
	MsgID        string          `json:"msg_id"`
	BatchReplies bool            `json:"batch_replies"`
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
	Failure *Error `json:"failure"`
}

func (classic) encodeRequest(pub *amqp.Publishing, r *outRequest) error {
	m := classicOutRequest{Method: r.method, Args: r.args, Version: r.version}
	if r.replyTo != "" {
		m.MsgID = r.msgID
		m.BatchReplies = r.batchReplies
	}
	body, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode arguments of %q: %w", r.method, err)
	}
	pub.ContentType = contentTypeJSON
	pub.CorrelationId = r.msgID
	pub.ReplyTo = r.replyTo
	pub.Body = body
	if !r.deadline.IsZero() {
		pub.Headers = amqp.Table{deadlineHeader: r.deadline.UnixMilli()}
	}
	pub.Headers = putMetadata(pub.Headers, r.meta)
	return nil
}

var (
	errNotJSON  = errors.New("body is not a JSON object")
	errNoMethod = errors.New(`no "method" in the body`)
	errBadArgs  = errors.New(`"args" is not a JSON object`)
	errNotBatch = errors.New("body is not a JSON array of requests")
)

func (f classic) decodeRequest(d *amqp.Delivery, r *inRequest) error {
	r.msgID = d.CorrelationId
	if ms, ok := integer(d.Headers[deadlineHeader]); ok {
		r.deadline = time.UnixMilli(ms)
	}
	err := f.decodeBody(d.ReplyTo, d.Body, r)
	r.meta = metadataOf(d.Headers)
	if why, ok := d.Headers[unreadableHeader]; ok {
		return fmt.Errorf("%w: %v", errUnreadableHeaders, why)
	}
	return err
}

var errUnreadableHeaders = errors.New("AMQP headers that no AMQP 0-9-1 client library reads")

// integer returns v, a header's value, as an int64 if it is an integer of
// any width that AMQP tables carry, as other clients write them.
func integer(v any) (int64, bool) {
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

// clipMessage bounds an error message made from what a caller sent.
func clipMessage(msg string) string {
	const most = 256
	if len(msg) <= most {
		return msg
	}
	return fmt.Sprintf("%s... (%d bytes)", msg[:most], len(msg))
}

func (f classic) decodeBatched(d *amqp.Delivery, e *batchedRequest, r *inRequest) error {
	r.msgID, r.deadline, r.meta = e.msgID, e.deadline, e.meta
	return f.decodeBody(d.ReplyTo, e.body, r)
}

// decodeBody decodes a request's body into r, whose reply goes to replyTo
// unless that is empty.
func (classic) decodeBody(replyTo string, body []byte, r *inRequest) error {
	if replyTo != "" {
		r.reply = queueRoute(replyTo)
	}
	var m classicRequest
	if err := json.Unmarshal(body, &m); err != nil {
		return fmt.Errorf("%w: %v", errNotJSON, err)
	}
	if r.msgID == "" {
		r.msgID = m.MsgID
	}
	if !r.reply.ok() && m.MsgID != "" {
		r.reply = route{exchange: m.MsgID, key: m.MsgID, declare: true}
	}
	if m.Method == "" {
		return errNoMethod
	}
	r.method = m.Method
	r.version = m.Version
	r.batch = m.BatchReplies
	if a := bytes.TrimLeft(m.Args, " \t\r\n"); len(a) > 0 && a[0] != '{' && !bytes.Equal(a, []byte("null")) {
		return errBadArgs
	}
	r.args = m.Args
	return nil
}

func (classic) encodeReply(pub *amqp.Publishing, msgID, server string, result any, failure *Error) error {
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
	pub.Type = replyType
	pub.CorrelationId = msgID
	pub.Body = body
	if server != "" {
		pub.Headers = amqp.Table{serverHeader: server}
	}
	return nil
}

type classicRequestEntry struct {
	ID       string          `json:"id"`
	Deadline int64           `json:"deadline"`
	Headers  Metadata        `json:"headers"`
	Request  json.RawMessage `json:"request"`
}

func (classic) encodeRequests(pub *amqp.Publishing, replyTo string, reqs []batchedRequest) error {
	n := 2
	var latest time.Time
	for _, r := range reqs {
		n += len(r.msgID) + len(r.body) + len(`{"id":"","deadline":1767225600000,"request":},`)
		if r.deadline.After(latest) {
			latest = r.deadline
		}
	}
	body := make([]byte, 0, n)
	body = append(body, '[')
	for i, r := range reqs {
		body = appendEntryID(body, i, r.msgID)
		body = append(body, `,"deadline":`...)
		var ms int64
		if !r.deadline.IsZero() {
			ms = r.deadline.UnixMilli()
		}
		body = strconv.AppendInt(body, ms, 10)
		body = appendMetadata(body, r.meta)
		body = append(body, `,"request":`...)
		body = append(body, r.body...)
		body = append(body, '}')
	}
	body = append(body, ']')
	pub.ContentType = contentTypeJSON
	pub.Type = requestsType
	pub.ReplyTo = replyTo
	pub.Body = body
	if !latest.IsZero() {
		pub.Headers = amqp.Table{deadlineHeader: latest.UnixMilli()}
		pub.Expiration = expiration(time.Until(latest))
	}
	return nil
}

func (classic) returnedIDs(r *amqp.Return) []string {
	if r.Type != requestsType {
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

func (classic) isBatch(d *amqp.Delivery) bool { return d.Type == requestsType }

func (classic) splitRequests(d *amqp.Delivery) ([]batchedRequest, error) {
	var entries []classicRequestEntry
	if err := json.Unmarshal(d.Body, &entries); err != nil {
		return nil, fmt.Errorf("%w: %v", errNotBatch, err)
	}
	reqs := make([]batchedRequest, len(entries))
	for i, e := range entries {
		for k := range e.Headers {
			if reservedHeader(k) {
				delete(e.Headers, k)
			}
		}
		reqs[i] = batchedRequest{msgID: e.ID, meta: e.Headers, body: e.Request}
		if e.Deadline > 0 {
			reqs[i].deadline = time.UnixMilli(e.Deadline)
		}
	}
	return reqs, nil
}

func (f classic) encodeReplies(pub *amqp.Publishing, replies []batchedReply) error {
	if len(replies) == 1 {
		pub.ContentType = contentTypeJSON
		pub.Type = replyType
		pub.CorrelationId = replies[0].msgID
		pub.Body = replies[0].body
		return nil
	}
	n := 2
	for _, r := range replies {
		n += len(r.msgID) + len(r.body) + len(`{"id":"","reply":},`)
	}
	body := make([]byte, 0, n)
	body = append(body, '[')
	for i, r := range replies {
		body = appendEntryID(body, i, r.msgID)
		body = append(body, `,"reply":`...)
		body = append(body, r.body...)
		body = append(body, '}')
	}
	body = append(body, ']')
	pub.ContentType = contentTypeJSON
	pub.Type = batchType
	pub.Body = body
	return nil
}

// appendEntryID opens the i-th object of a batch's array with its id.
func appendEntryID(b []byte, i int, id string) []byte {
	if i > 0 {
		b = append(b, ',')
	}
	b = append(b, `{"id":`...)
	return appendJSONString(b, id)
}

// appendMetadata appends md to b as a batch entry's "headers" member,
// without the reserved keys, in key order; nothing if none is left.
func appendMetadata(b []byte, md Metadata) []byte {
	keys := make([]string, 0, len(md))
	for k := range md {
		if !reservedHeader(k) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return b
	}
	slices.Sort(keys)
	b = append(b, `,"headers":{`...)
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendJSONString(b, md[k])
	}
	return append(b, '}')
}

// appendJSONString appends s to b as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x7f {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

type classicBatchEntry struct {
	ID    string          `json:"id"`
	Reply json.RawMessage `json:"reply"`
}

func (classic) splitReplies(d *amqp.Delivery, each func(*amqp.Delivery)) (bool, error) {
	if d.Type != batchType {
		return false, nil
	}
	var entries []classicBatchEntry
	if err := json.Unmarshal(d.Body, &entries); err != nil {
		return true, fmt.Errorf("%w: batch: %v", ErrMalformedReply, err)
	}
	for _, e := range entries {
		each(&amqp.Delivery{ContentType: d.ContentType, Type: d.Type, CorrelationId: e.ID, Body: e.Reply})
	}
	return true, nil
}

func (classic) replyID(d *amqp.Delivery) string { return d.CorrelationId }

func (classic) acceptsBatches(d *amqp.Delivery) bool {
	return d.Type == replyType || d.Type == batchType
}

func (classic) replyServer(d *amqp.Delivery) string {
	name, _ := d.Headers[serverHeader].(string)
	return name
}

func (classic) decodeReply(d *amqp.Delivery, result any) error {
	// One pass: the result decodes straight into result, which the
	// interface field holds (or is skipped when result is nil).
	m := classicReplyInto{Result: result}
	if result == nil {
		m.Result = new(json.RawMessage)
	}
	err := json.Unmarshal(d.Body, &m)
	if m.Failure != nil {
		return m.Failure
	}
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &typeErr) && strings.HasPrefix(typeErr.Field, "result"):
		return fmt.Errorf("%w: result: %v", ErrMalformedReply, err)
	case err != nil:
		return fmt.Errorf("%w: %v", ErrMalformedReply, err)
	}
	return nil
}

// classicReplyInto is a reply decoded in one pass: Result holds a pointer
// to where the result goes.
type classicReplyInto struct {
	Result  any    `json:"result"`
	Failure *Error `json:"failure"`
}

// newOutRequest is req as a client sends it, due at deadline, with the
// metadata and the request context of ctx.
func newOutRequest(ctx context.Context, req *Request, deadline time.Time) outRequest {
	r := outRequest{msgID: uuid.NewString(), method: req.Method, version: req.Since, args: req.Args, deadline: deadline, context: OsloContext(ctx), meta: OutgoingMetadata(ctx)}
	if req.Service != nil {
		r.namespace = req.Service.Namespace
	}
	return r
}

// capped returns ErrVersionCap, saying why, for a request newer than its
// target's version cap, and nil otherwise.
func capped(req *Request) error {
	if req.VersionCap != "" && !compatible(req.VersionCap, req.Since) {
		return fmt.Errorf("%w: the method needs %s, the cap is %s", ErrVersionCap, versionOr1(req.Since), req.VersionCap)
	}
	return nil
}

// tooLarge returns ErrTooLarge, saying why, for a request body over limit.
func tooLarge(body []byte, limit int) error {
	if len(body) > limit {
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, len(body), limit)
	}
	return nil
}

// encodeReply makes with f the reply to req, carrying result or failure;
// from, when set, names the server. A result that does not encode, or
// whose encoding panics (a MarshalJSON of the method's), is the method's
// failure, not the server's: the reply then carries a CodeInternal
// failure, and sv's log says why.
func encodeReply(f wireFormat, sv *services, req *inRequest, from string, result any, failure *Error) amqp.Publishing {
	var pub amqp.Publishing
	if err := encodeReplySafely(f, &pub, req.msgID, from, result, failure); err != nil {
		sv.throttle.methodError(sv.log, req.method, "amqprpc: encode reply", "correlation_id", req.msgID, "method", req.method, "error", err)
		failure = &Error{Code: CodeInternal, Message: fmt.Sprintf("encode result of %q: %v", req.method, err)}
		if err := f.encodeReply(&pub, req.msgID, from, nil, failure); err != nil {
			panic("amqprpc: an *Error does not encode: " + err.Error())
		}
	}
	return pub
}

// encodeReplySafely encodes a reply with f, and returns an error rather
// than panic when a result's MarshalJSON does.
func encodeReplySafely(f wireFormat, pub *amqp.Publishing, msgID, from string, result any, failure *Error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return f.encodeReply(pub, msgID, from, result, failure)
}

// decodeReply decodes with f the result of reply d into v, or returns the
// server's error with the identity of the declared error of svc it names.
func decodeReply(f wireFormat, d *amqp.Delivery, v any, svc *ServiceDesc) error {
	err := f.decodeReply(d, v)
	if rerr, ok := err.(*Error); ok {
		return fromError(rerr, svc)
	}
	return err
}

// decodeArgs decodes a request's arguments object into args, the generated
// argument struct of the method. Names that the method does not have are an
// error, so that a misspelt argument fails instead of being dropped.
func decodeArgs(raw json.RawMessage, args any) error {
	if len(raw) == 0 {
		return nil
	}
	a := argsDecoders.Get().(*argsDecoder)
	a.r.Reset(raw)
	start := a.dec.InputOffset()
	err := a.dec.Decode(args)
	clean := err == nil && a.dec.InputOffset()-start == int64(len(raw)) && a.dec.Buffered().(*bytes.Reader).Len() == 0
	a.r.Reset(nil)
	if clean { // nothing of raw is left in the decoder: it can decode the next
		argsDecoders.Put(a)
	}
	return err
}

// argsDecoder is a json.Decoder that rejects unknown fields, kept for reuse:
// making one for each request costs more than decoding small arguments.
type argsDecoder struct {
	r   bytes.Reader
	dec *json.Decoder
}

var argsDecoders = sync.Pool{New: func() any {
	a := new(argsDecoder)
	a.dec = json.NewDecoder(&a.r)
	a.dec.DisallowUnknownFields()
	return a
}}
