package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
)

// OsloConfig is what a client or a server speaking oslo.messaging's
// protocol (WithOslo) must agree on with the OpenStack services on its
// broker: the settings of their [DEFAULT] and [oslo_messaging_rabbit]
// sections that shape what they declare, so that every exchange and queue
// a Go peer declares is the one a Python peer declares too, whichever
// starts first (docs/PROTOCOL.md, oslo.messaging).
type OsloConfig struct {
	// ControlExchange is the topic exchange that requests go to:
	// control_exchange, set by each service ("nova", "neutron", ...).
	// Default: "openstack", oslo.messaging's.
	ControlExchange string
	// DurableQueues is amqp_durable_queues: the control exchange and the
	// topic's queues are durable.
	DurableQueues bool
	// AutoDelete is amqp_auto_delete: the control exchange and the topic's
	// queues are deleted when their last binding or consumer goes.
	AutoDelete bool
	// QuorumQueues is rabbit_quorum_queue: the topic's queues are quorum
	// queues, and the control exchange durable.
	QuorumQueues bool
	// QuorumDeliveryLimit, QuorumMaxMemoryLength and QuorumMaxMemoryBytes
	// are rabbit_quorum_delivery_limit, rabbit_quorum_max_memory_length
	// and rabbit_quorum_max_memory_bytes (spelt "quroum" in
	// oslo.messaging 14): arguments of the quorum queues, when not 0.
	QuorumDeliveryLimit   int
	QuorumMaxMemoryLength int
	QuorumMaxMemoryBytes  int
	// CallMonitorTimeout is a client's call_monitor_timeout: when set, its
	// calls ask the server for a heartbeat every half of it while the
	// method runs, and fail with ErrServerSilent when none comes for that
	// long. The call's deadline still bounds it. Client only.
	CallMonitorTimeout time.Duration
	// Exceptions maps Go errors to the Python exceptions that oslo.messaging
	// callers catch, and back (see OsloException). Errors that none
	// matches map by their Code (docs/PROTOCOL.md).
	Exceptions []OsloException
}

// DefaultControlExchange is oslo.messaging's control_exchange.
const DefaultControlExchange = "openstack"

// OsloException is a Python exception that a Go error stands for, between
// oslo.messaging peers. A server sends an error that matches Err
// (errors.Is) or, for an entry without Err, whose Code is Code, as the
// exception Module.Class: a Python caller that lists Module in its
// allowed_remote_exmods raises that class, with the error's message as
// its only argument; one that does not raises oslo_messaging.RemoteError.
// A client receives the exception Module.Class as an *Error with Code,
// wrapping Err, so that errors.Is(err, Err) holds.
type OsloException struct {
	Module, Class string
	Err           error
	Code          Code
}

// WithOslo makes a client or a server speak oslo.messaging's RPC protocol,
// as OpenStack services do, instead of amqprpc's own: its envelope, its
// topology, declared with the flags cfg gives, its request context
// (WithOsloContext), failures and heartbeats. Requests go to
// cfg.ControlExchange (WithExchange, given after, overrides it). A server
// acknowledges a request when it takes it, before running it, as
// oslo.messaging servers do (at most once); WithAckAfterReply, given
// after, makes it acknowledge after replying. The options of amqprpc's
// own topology (WithQueueType, WithQueueExpiry, WithDeliveryLimit,
// WithDeadLetterExchange) do not apply: cfg says what is declared.
// Generated code is the same for both protocols; an interface's namespace
// is //amqprpc:namespace.
func WithOslo(cfg OsloConfig) Option {
	return option(func(c *config) {
		if cfg.ControlExchange == "" {
			cfg.ControlExchange = DefaultControlExchange
		}
		c.oslo = &cfg
		c.exchange = cfg.ControlExchange
		c.ackAfterReply = false
		c.callMonitor = cfg.CallMonitorTimeout
	})
}

// OsloRequestContext is the request context of an oslo.messaging request:
// the caller's RequestContext.to_dict(), such as user_id, project_id,
// request_id and global_request_id. It logs without auth_token.
type OsloRequestContext map[string]any

// LogValue hides auth_token, which travels in clear.
func (rc OsloRequestContext) LogValue() slog.Value {
	attrs := make([]slog.Attr, 0, len(rc))
	for _, k := range sortedKeys(rc) {
		v := rc[k]
		if k == "auth_token" {
			v = "<redacted>"
		}
		attrs = append(attrs, slog.Any(k, v))
	}
	return slog.GroupValue(attrs...)
}

func sortedKeys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }

type osloContextKey struct{}

// WithOsloContext returns ctx carrying rc, the request context that a
// client speaking oslo.messaging (WithOslo) sends with each request made
// with it, as "_context_<key>" entries.
func WithOsloContext(ctx context.Context, rc map[string]any) context.Context {
	return context.WithValue(ctx, osloContextKey{}, OsloRequestContext(rc))
}

// OsloContext returns the oslo.messaging request context of ctx: in a
// method's context, the one its caller sent; elsewhere, the one
// WithOsloContext put there; nil if none. A method that calls on with its
// context sends its caller's request context on, as OpenStack services do.
func OsloContext(ctx context.Context) OsloRequestContext {
	rc, _ := ctx.Value(osloContextKey{}).(OsloRequestContext)
	return rc
}

// osloProtocol is oslo.messaging's RPC protocol over RabbitMQ, as its
// rabbit driver speaks it (docs/PROTOCOL.md, oslo.messaging).
type osloProtocol struct {
	cfg  *config
	oslo *OsloConfig
}

func newOsloProtocol(cfg *config) *osloProtocol {
	return &osloProtocol{cfg: cfg, oslo: cfg.oslo}
}

// osloHeartbeatType marks a reply that splitReplies found to be a
// heartbeat.
const osloHeartbeatType = "oslo.heartbeat"

func (p *osloProtocol) requestExchange() exchangeSpec {
	return exchangeSpec{name: p.cfg.exchange, kind: amqp.ExchangeTopic, durable: p.oslo.DurableQueues || p.oslo.QuorumQueues, autoDelete: p.oslo.AutoDelete}
}

func (p *osloProtocol) fanoutExchange(topic string) exchangeSpec {
	return exchangeSpec{name: topic + "_fanout", kind: amqp.ExchangeFanout, autoDelete: true}
}

// serverQueues are oslo.messaging's: <topic> and <topic>.<server> as its
// settings make them, since Python servers declare them too. The fanout
// queue is the server's alone: exclusive, so that it goes with its
// connection, where oslo.messaging's stays 30 minutes
// (rabbit_transient_queues_ttl); no peer declares it, so no peer sees the
// difference.
func (p *osloProtocol) serverQueues(topic, server, random string) (shared, own, fanout queueSpec) {
	shared = p.topicQueue(topic)
	own = p.topicQueue(topic + "." + server)
	fanout = queueSpec{name: topic + "_fanout_" + random, autoDelete: true, exclusive: true}
	return shared, own, fanout
}

func (p *osloProtocol) topicQueue(name string) queueSpec {
	q := queueSpec{name: name, durable: p.oslo.DurableQueues || p.oslo.QuorumQueues, autoDelete: p.oslo.AutoDelete, mirrors: true}
	if p.oslo.QuorumQueues {
		q.args = amqp.Table{"x-queue-type": string(QueueQuorum)}
		for arg, v := range map[string]int{
			"x-delivery-limit":       p.oslo.QuorumDeliveryLimit,
			"x-max-in-memory-length": p.oslo.QuorumMaxMemoryLength,
			"x-max-in-memory-bytes":  p.oslo.QuorumMaxMemoryBytes,
		} {
			if v > 0 {
				q.args[arg] = int64(v)
			}
		}
	}
	return q
}

// replyQueue is named as oslo.messaging names its reply queues, but
// exclusive: its calls end with their connection anyway.
func (p *osloProtocol) replyQueue(random string) queueSpec {
	return queueSpec{name: "reply_" + random, autoDelete: true, exclusive: true}
}

var errOsloGather = errors.New("amqprpc: oslo.messaging has no call to every server of a topic, only casts (Fanout)")

func (p *osloProtocol) gathers() error { return errOsloGather }

// find dispatches as oslo.messaging's RPCDispatcher does: the method, if
// its service has the request's namespace and a compatible version; else
// NoSuchMethod when a service has both, and UnsupportedVersion when none
// has, even for another namespace. Names starting with "_" are never
// methods.
func (p *osloProtocol) find(_ string, methods map[string]method, req *inRequest) (method, *Error) {
	serves := func(d *ServiceDesc) bool { return d.Namespace == req.namespace && compatible(d.Version, req.version) }
	m, ok := methods[req.method]
	if ok && !strings.HasPrefix(req.method, "_") && serves(m.desc) {
		return m, nil
	}
	for _, m := range methods {
		if serves(m.desc) {
			return m, &Error{Code: CodeUnimplemented, Module: osloDispatcher, Class: "NoSuchMethod",
				Message: "Endpoint does not support RPC method " + clipMessage(req.method)}
		}
	}
	return m, &Error{Code: CodeUnsupportedVersion, Module: osloDispatcher, Class: "UnsupportedVersion",
		Message: fmt.Sprintf("Endpoint does not support RPC version %s. Attempted method: %s", clipMessage(versionOr1(req.version)), clipMessage(req.method))}
}

const osloDispatcher = "oslo_messaging.rpc.dispatcher"

// The envelope: every message's body is {"oslo.version": "2.0",
// "oslo.message": "<the message, as JSON text>"}.

type osloEnvelope struct {
	Version string `json:"oslo.version"`
	Message string `json:"oslo.message"`
}

// envelope fills pub with message, enveloped, and the properties
// oslo.messaging gives every message.
func envelope(pub *amqp.Publishing, message []byte) error {
	body, err := json.Marshal(osloEnvelope{Version: "2.0", Message: string(message)})
	if err != nil {
		return err
	}
	pub.ContentType = contentTypeJSON
	pub.ContentEncoding = "utf-8"
	pub.DeliveryMode = amqp.Persistent
	pub.Body = body
	return nil
}

var errOsloEnvelope = errors.New("unsupported oslo.messaging envelope version")

// unenvelope returns the message of body: the envelope's, or body itself,
// oslo.messaging's un-enveloped 1.0 format.
func unenvelope(body []byte) ([]byte, error) {
	var env struct {
		Version *string `json:"oslo.version"`
		Message *string `json:"oslo.message"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, fmt.Errorf("%w: %v", errNotJSON, err)
	}
	if env.Version == nil || env.Message == nil {
		return body, nil
	}
	if !compatible("2.0", *env.Version) {
		return nil, fmt.Errorf("%w %s", errOsloEnvelope, clip(*env.Version))
	}
	return []byte(*env.Message), nil
}

func newUniqueID() string { return strings.ReplaceAll(uuid.NewString(), "-", "") }

func (p *osloProtocol) encodeRequest(pub *amqp.Publishing, r *outRequest) error {
	args, err := json.Marshal(r.args)
	if err != nil {
		return fmt.Errorf("encode arguments of %q: %w", r.method, err)
	}
	if bytes.Equal(args, []byte("null")) {
		args = []byte("{}")
	}
	m := make([]byte, 0, 160+len(args))
	m = append(m, `{"method":`...)
	m = appendJSONString(m, r.method)
	m = append(m, `,"args":`...)
	m = append(m, args...)
	if r.namespace != "" {
		m = append(m, `,"namespace":`...)
		m = appendJSONString(m, r.namespace)
	}
	if r.version != "" {
		m = append(m, `,"version":`...)
		m = appendJSONString(m, r.version)
	}
	if r.replyTo != "" {
		m = append(m, `,"_msg_id":`...)
		m = appendJSONString(m, r.msgID)
		m = append(m, `,"_reply_q":`...)
		m = appendJSONString(m, r.replyTo)
		m = append(m, `,"_timeout":`...)
		if secs := int64(r.heartbeat / time.Second); secs > 0 {
			m = fmt.Appendf(m, "%d", secs)
		} else {
			m = append(m, "null"...)
		}
	}
	m = append(m, `,"_unique_id":`...)
	m = appendJSONString(m, newUniqueID())
	for _, k := range sortedKeys(r.context) {
		v, err := json.Marshal(r.context[k])
		if err != nil {
			return fmt.Errorf("encode request context %q: %w", k, err)
		}
		m = append(m, ',')
		m = appendJSONString(m, "_context_"+k)
		m = append(m, ':')
		m = append(m, v...)
	}
	m = append(m, '}')
	if err := envelope(pub, m); err != nil {
		return err
	}
	pub.MessageId = r.msgID // for returns: oslo.messaging reads no property but content_type
	return nil
}

func (p *osloProtocol) returnedIDs(r *amqp.Return) []string { return []string{r.MessageId} }

func (p *osloProtocol) isBatch(*amqp.Delivery) bool { return false }

func (p *osloProtocol) splitRequests(*amqp.Delivery) ([]batchedRequest, error) {
	return nil, errNotBatch
}

func (p *osloProtocol) decodeBatched(*amqp.Delivery, *batchedRequest, *inRequest) error {
	return errNotBatch
}

func (p *osloProtocol) encodeRequests(*amqp.Publishing, string, []batchedRequest) error {
	return errNotBatch
}

func (p *osloProtocol) encodeReplies(pub *amqp.Publishing, replies []batchedReply) error {
	if len(replies) != 1 {
		return errNotBatch
	}
	return envelope(pub, replies[0].body)
}

const contextPrefix = "_context_"

func (p *osloProtocol) decodeRequest(d *amqp.Delivery, r *inRequest) error {
	err := p.decodeBody(d.Body, r)
	if why, ok := d.Headers[unreadableHeader]; ok {
		return fmt.Errorf("%w: %v", errUnreadableHeaders, why)
	}
	return err
}

func (p *osloProtocol) decodeBody(body []byte, r *inRequest) error {
	message, err := unenvelope(body)
	if err != nil {
		return err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(message, &fields); err != nil {
		return fmt.Errorf("%w: %v", errNotJSON, err)
	}
	str := func(key string) string {
		var s string
		json.Unmarshal(fields[key], &s) // absent, null or not a string: ""
		return s
	}
	r.msgID = str("_msg_id")
	if q := str("_reply_q"); q != "" && r.msgID != "" {
		r.reply = queueRoute(q)
	}
	var timeout float64
	if json.Unmarshal(fields["_timeout"], &timeout) == nil && timeout > 0 {
		r.heartbeat = time.Duration(min(timeout, 1e6) * float64(time.Second))
	}
	r.uniqueID = str("_unique_id")
	r.namespace = str("namespace")
	r.version = str("version")
	for k, v := range fields {
		if name, ok := strings.CutPrefix(k, contextPrefix); ok {
			if r.context == nil {
				r.context = make(map[string]any)
			}
			var value any
			json.Unmarshal(v, &value) // a field of an object that decoded: it decodes
			r.context[name] = value
		}
	}
	r.method = str("method")
	if r.method == "" {
		return errNoMethod
	}
	if a := bytes.TrimSpace(fields["args"]); len(a) > 0 && a[0] != '{' && !bytes.Equal(a, []byte("null")) {
		return errBadArgs
	}
	r.args = fields["args"]
	return nil
}

// osloReply is a reply's message; Failure is a JSON text, not an object.
type osloReply struct {
	Result   any     `json:"result"`
	Failure  *string `json:"failure"`
	Ending   bool    `json:"ending"`
	MsgID    string  `json:"_msg_id"`
	UniqueID string  `json:"_unique_id"`
}

func (p *osloProtocol) encodeReply(pub *amqp.Publishing, msgID, _ string, result any, failure *Error) error {
	m := osloReply{Result: result, Ending: true, MsgID: msgID, UniqueID: newUniqueID()}
	if failure != nil {
		f, err := json.Marshal(p.failureOf(failure))
		if err != nil {
			return err
		}
		text := string(f)
		m.Result, m.Failure = nil, &text
	}
	message, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return envelope(pub, message)
}

func (p *osloProtocol) encodeHeartbeat(pub *amqp.Publishing, msgID string) error {
	message, err := json.Marshal(osloReply{MsgID: msgID, UniqueID: newUniqueID()})
	if err != nil {
		return err
	}
	return envelope(pub, message)
}

// splitReplies hands each the message of reply d, unenveloped, with its
// _msg_id as correlation id, and marked when it is a heartbeat.
func (p *osloProtocol) splitReplies(d *amqp.Delivery, each func(*amqp.Delivery)) (bool, error) {
	message, err := unenvelope(d.Body)
	if err != nil {
		return true, fmt.Errorf("%w: %v", ErrMalformedReply, err)
	}
	var head struct {
		MsgID  string `json:"_msg_id"`
		Ending bool   `json:"ending"`
	}
	if err := json.Unmarshal(message, &head); err != nil {
		return true, fmt.Errorf("%w: %v", ErrMalformedReply, err)
	}
	reply := amqp.Delivery{ContentType: d.ContentType, CorrelationId: head.MsgID, Body: message}
	if !head.Ending {
		reply.Type = osloHeartbeatType
	}
	each(&reply)
	return true, nil
}

func (p *osloProtocol) isHeartbeat(d *amqp.Delivery) bool { return d.Type == osloHeartbeatType }

func (p *osloProtocol) replyID(d *amqp.Delivery) string { return d.CorrelationId }

func (p *osloProtocol) replyServer(*amqp.Delivery) string { return "" }

func (p *osloProtocol) acceptsBatches(*amqp.Delivery) bool { return false }

func (p *osloProtocol) decodeReply(d *amqp.Delivery, result any) error {
	m := osloReply{Result: result}
	if result == nil {
		m.Result = new(json.RawMessage)
	}
	err := json.Unmarshal(d.Body, &m)
	if m.Failure != nil && *m.Failure != "" {
		var f osloFailure
		if err := json.Unmarshal([]byte(*m.Failure), &f); err != nil {
			return fmt.Errorf("%w: failure: %v", ErrMalformedReply, err)
		}
		return p.errorOf(&f)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrMalformedReply, err)
	}
	return nil
}

// osloFailure is a Python exception, as oslo.messaging serializes it.
type osloFailure struct {
	Class     string         `json:"class"`
	Module    string         `json:"module"`
	Message   string         `json:"message"`
	Traceback []string       `json:"tb"`
	Args      []any          `json:"args"`
	Kwargs    map[string]any `json:"kwargs"`
}

// pythonExceptions are the builtin exceptions that errors of a code are
// sent as, when no OsloException matches, and the codes that builtin
// exceptions are received as. The codes not here go as
// amqprpc.<Code>Error, which Python callers raise as RemoteError.
var pythonExceptions = []struct {
	class string
	code  Code
}{
	{"ValueError", CodeInvalidArgument},
	{"TypeError", CodeInvalidArgument},
	{"ValueError", CodeMalformed},
	{"IndexError", CodeOutOfRange},
	{"LookupError", CodeNotFound},
	{"KeyError", CodeNotFound},
	{"FileExistsError", CodeAlreadyExists},
	{"PermissionError", CodePermissionDenied},
	{"PermissionError", CodeUnauthenticated},
	{"TimeoutError", CodeDeadlineExceeded},
	{"NotImplementedError", CodeUnimplemented},
	{"MemoryError", CodeResourceExhausted},
}

// failureOf is the Python exception that e is sent as: the one e names
// (a dispatch failure), else the first OsloException it matches, else
// the builtin exception of its code, else amqprpc.<Code>Error.
func (p *osloProtocol) failureOf(e *Error) osloFailure {
	f := osloFailure{Module: e.Module, Class: e.Class, Message: e.Message, Traceback: []string{}, Args: []any{e.Message}, Kwargs: map[string]any{}}
	if f.Class != "" {
		return f
	}
	for _, x := range p.oslo.Exceptions {
		if (x.Err != nil && errors.Is(e, x.Err)) || (x.Err == nil && x.Code != "" && x.Code == e.Code) {
			f.Module, f.Class = x.Module, x.Class
			return f
		}
	}
	for _, x := range pythonExceptions {
		if x.code == e.Code {
			f.Module, f.Class = "builtins", x.class
			return f
		}
	}
	f.Module, f.Class = "amqprpc", codeClass(e.Code)
	return f
}

// errorOf is the *Error that the Python exception f is received as.
func (p *osloProtocol) errorOf(f *osloFailure) *Error {
	e := &Error{Code: CodeUnknown, Message: f.Message, Module: f.Module, Class: f.Class, Traceback: f.Traceback}
	module := f.Module
	if module == "exceptions" { // Python 2's builtins
		module = "builtins"
	}
	for _, x := range p.oslo.Exceptions {
		if x.Module == module && x.Class == f.Class {
			e.cause = x.Err
			if x.Code != "" {
				e.Code = x.Code
			}
			return e
		}
	}
	switch module {
	case "builtins":
		for _, x := range pythonExceptions {
			if x.class == f.Class {
				e.Code = x.code
				break
			}
		}
	case osloDispatcher:
		switch f.Class {
		case "NoSuchMethod":
			e.Code = CodeUnimplemented
		case "UnsupportedVersion":
			e.Code = CodeUnsupportedVersion
		}
	case "amqprpc":
		for _, c := range allCodes {
			if codeClass(c) == f.Class {
				e.Code = c
				break
			}
		}
	}
	return e
}

// codeClass is the name of the Python exception of a code that has no
// builtin one: internal -> InternalError.
func codeClass(c Code) string {
	var b strings.Builder
	for w := range strings.SplitSeq(string(c), "_") {
		if w != "" {
			b.WriteString(strings.ToUpper(w[:1]) + w[1:])
		}
	}
	return b.String() + "Error"
}

var allCodes = []Code{CodeUnknown, CodeMalformed, CodeInvalidArgument, CodeUnimplemented, CodeUnsupportedVersion,
	CodeInternal, CodeNotFound, CodeAlreadyExists, CodePermissionDenied, CodeUnauthenticated, CodeFailedPrecondition,
	CodeAborted, CodeOutOfRange, CodeResourceExhausted, CodeUnavailable, CodeDeadlineExceeded, CodeCanceled, CodeDataLoss}

// recentIDs remembers the unique ids of the last requests that had one,
// so that a server drops a message it is given twice, as oslo.messaging
// servers do with the last 16.
type recentIDs struct {
	mu   sync.Mutex
	ids  map[string]bool
	ring [64]string
	next int
}

// repeats reports whether id is one of the last ones, and remembers it.
func (r *recentIDs) repeats(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ids[id] {
		return true
	}
	if r.ids == nil {
		r.ids = make(map[string]bool, len(r.ring))
	}
	delete(r.ids, r.ring[r.next])
	r.ring[r.next] = id
	r.next = (r.next + 1) % len(r.ring)
	r.ids[id] = true
	return false
}
