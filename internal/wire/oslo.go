package wire

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
)

// OsloSettings are the settings of an OpenStack deployment that shape what
// oslo.messaging's peers declare (docs/PROTOCOL.md, oslo.messaging).
type OsloSettings struct {
	// Exchange is the control exchange: control_exchange.
	Exchange string
	// DurableQueues, AutoDelete and QuorumQueues are amqp_durable_queues,
	// amqp_auto_delete and rabbit_quorum_queue; the limits are
	// rabbit_quorum_delivery_limit, rabbit_quorum_max_memory_length and
	// rabbit_quorum_max_memory_bytes, when not 0.
	DurableQueues, AutoDelete, QuorumQueues                          bool
	QuorumDeliveryLimit, QuorumMaxMemoryLength, QuorumMaxMemoryBytes int
}

// Oslo returns oslo.messaging's RPC protocol over RabbitMQ, as its rabbit
// driver speaks it, with the settings s: no batches, no gathers; heartbeats
// to callers that ask for them.
func Oslo(s OsloSettings) *Protocol {
	o := oslo{s}
	return &Protocol{Name: "oslo.messaging", Topology: o, Requests: o, Replies: o, Finder: o, Heartbeats: o}
}

type oslo struct{ s OsloSettings }

func (o oslo) RequestExchange() Exchange {
	return Exchange{Name: o.s.Exchange, Kind: amqp.ExchangeTopic, Durable: o.s.DurableQueues || o.s.QuorumQueues, AutoDelete: o.s.AutoDelete}
}

func (o oslo) FanoutExchange(topic string) Exchange {
	return Exchange{Name: topic + "_fanout", Kind: amqp.ExchangeFanout, AutoDelete: true}
}

// ServerQueues are oslo.messaging's: <topic> and <topic>.<server> as its
// settings make them, since Python servers declare them too. The fanout
// queue is the server's alone: exclusive, so that it goes with its
// connection, where oslo.messaging's stays 30 minutes
// (rabbit_transient_queues_ttl); no peer declares it, so no peer sees the
// difference.
func (o oslo) ServerQueues(topic, server, random string) (shared, own, fanout Queue) {
	shared = o.topicQueue(topic)
	own = o.topicQueue(topic + "." + server)
	fanout = Queue{Name: topic + "_fanout_" + random, AutoDelete: true, Exclusive: true}
	return shared, own, fanout
}

func (o oslo) topicQueue(name string) Queue {
	q := Queue{Name: name, Durable: o.s.DurableQueues || o.s.QuorumQueues, AutoDelete: o.s.AutoDelete, Mirrors: true}
	if o.s.QuorumQueues {
		q.Args = amqp.Table{"x-queue-type": "quorum"}
		for arg, v := range map[string]int{
			"x-delivery-limit":       o.s.QuorumDeliveryLimit,
			"x-max-in-memory-length": o.s.QuorumMaxMemoryLength,
			"x-max-in-memory-bytes":  o.s.QuorumMaxMemoryBytes,
		} {
			if v > 0 {
				q.Args[arg] = int64(v)
			}
		}
	}
	return q
}

// ReplyQueue is named as oslo.messaging names its reply queues, but
// exclusive: its calls end with their connection anyway.
func (oslo) ReplyQueue(random string) Queue {
	return Queue{Name: "reply_" + random, AutoDelete: true, Exclusive: true}
}

// Find dispatches as oslo.messaging's RPCDispatcher does: the method, if
// its service has the request's namespace and a compatible version; else
// NoSuchMethod when a service has both, and UnsupportedVersion when none
// has, even for another namespace. Names starting with "_" are never
// methods.
func (oslo) Find(_ string, found *Service, all []*Service, r *In) *Failure {
	serves := func(s *Service) bool { return s.Namespace == r.Namespace && Compatible(s.Version, r.Version) }
	if found != nil && !strings.HasPrefix(r.Method, "_") && serves(found) {
		return nil
	}
	if slices.ContainsFunc(all, serves) {
		return &Failure{Code: "unimplemented", Module: osloDispatcher, Class: "NoSuchMethod",
			Message: "Endpoint does not support RPC method " + ClipMessage(r.Method)}
	}
	return &Failure{Code: "unsupported_version", Module: osloDispatcher, Class: "UnsupportedVersion",
		Message: fmt.Sprintf("Endpoint does not support RPC version %s. Attempted method: %s", ClipMessage(VersionOr1(r.Version)), ClipMessage(r.Method))}
}

const osloDispatcher = "oslo_messaging.rpc.dispatcher"

// The envelope: every message's body is {"oslo.version": "2.0",
// "oslo.message": "<the message, as JSON text>"}.

// envelope fills pub with message, enveloped, and the properties
// oslo.messaging gives every message.
func envelope(pub *amqp.Publishing, message []byte) {
	body := make([]byte, 0, len(message)+len(message)/4+48)
	body = append(body, `{"oslo.version": "2.0", "oslo.message": `...)
	body = appendQuoted(body, message)
	pub.ContentType = contentTypeJSON
	pub.ContentEncoding = "utf-8"
	pub.DeliveryMode = amqp.Persistent
	pub.Body = append(body, '}')
}

var errOsloEnvelope = malformed("unsupported oslo.messaging envelope version")

// unenvelope returns the message of body: the envelope's, or body itself,
// oslo.messaging's un-enveloped 1.0 format.
func unenvelope(body []byte) ([]byte, error) {
	if m, ok := unenvelopeAsSent(body); ok {
		return m, nil
	}
	var env struct {
		Version *string `json:"oslo.version"`
		Message *string `json:"oslo.message"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotJSON, err)
	}
	if env.Version == nil || env.Message == nil {
		return body, nil
	}
	if !Compatible("2.0", *env.Version) {
		return nil, fmt.Errorf("%w %s", errOsloEnvelope, Clip(*env.Version))
	}
	return []byte(*env.Message), nil
}

// The envelope as oslo.messaging and amqprpc send it, which
// unenvelopeAsSent reads without encoding/json.
const (
	envelopeHead = `{"oslo.version": "2.0", "oslo.message": "`
	envelopeTail = `"}`
)

// unenvelopeAsSent returns the message of body when body is an envelope as
// oslo.messaging and amqprpc write it, whose message has no escapes but
// \" and \\ and no bytes that JSON escapes, and reports whether it was; a
// body it does not report is left to encoding/json, which reads any.
func unenvelopeAsSent(body []byte) ([]byte, bool) {
	s, ok := bytes.CutPrefix(body, []byte(envelopeHead))
	if !ok {
		return nil, false
	}
	if s, ok = bytes.CutSuffix(s, []byte(envelopeTail)); !ok {
		return nil, false
	}
	m := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\'):
			i++
			m = append(m, s[i])
		case c == '\\' || c == '"' || c < 0x20 || c >= 0x80: // another escape, the string's end, or a byte to check
			return nil, false
		default:
			m = append(m, c)
		}
	}
	return m, true
}

// appendUniqueID appends a new _unique_id to b, quoted: a random UUID in
// 32 hexadecimal digits, as oslo.messaging makes them.
func appendUniqueID(b []byte) []byte {
	u := uuid.New()
	b = append(b, '"')
	b = hex.AppendEncode(b, u[:])
	return append(b, '"')
}

func (oslo) EncodeRequest(pub *amqp.Publishing, r *Out) error {
	args, err := json.Marshal(r.Args)
	if err != nil {
		return fmt.Errorf("encode arguments of %q: %w", r.Method, err)
	}
	if bytes.Equal(args, []byte("null")) {
		args = []byte("{}")
	}
	m := make([]byte, 0, 160+len(args)+len(r.Method)+len(r.Namespace)+len(r.Version)+len(r.MsgID)+len(r.ReplyTo))
	m = append(m, `{"method":`...)
	m = AppendJSONString(m, r.Method)
	m = append(m, `,"args":`...)
	m = append(m, args...)
	if r.Namespace != "" {
		m = append(m, `,"namespace":`...)
		m = AppendJSONString(m, r.Namespace)
	}
	if r.Version != "" {
		m = append(m, `,"version":`...)
		m = AppendJSONString(m, r.Version)
	}
	if r.ReplyTo != "" {
		m = append(m, `,"_msg_id":`...)
		m = AppendJSONString(m, r.MsgID)
		m = append(m, `,"_reply_q":`...)
		m = AppendJSONString(m, r.ReplyTo)
		m = append(m, `,"_timeout":`...)
		if secs := int64(r.Heartbeat / time.Second); secs > 0 {
			m = strconv.AppendInt(m, secs, 10)
		} else {
			m = append(m, "null"...)
		}
	}
	m = appendUniqueID(append(m, `,"_unique_id":`...))
	for _, k := range sortedKeys(r.Context) {
		v, err := json.Marshal(r.Context[k])
		if err != nil {
			return fmt.Errorf("encode request context %q: %w", k, err)
		}
		m = append(m, ',')
		m = AppendJSONString(m, contextPrefix+k)
		m = append(m, ':')
		m = append(m, v...)
	}
	m = append(m, '}')
	envelope(pub, m)
	pub.MessageId = r.MsgID // for returns: oslo.messaging reads no property but content_type
	return nil
}

// sortedKeys returns the keys of m in order; none without allocating.
func sortedKeys(m map[string]any) []string {
	if len(m) == 0 {
		return nil
	}
	return slices.Sorted(maps.Keys(m))
}

func (oslo) ReturnedIDs(r *amqp.Return) []string { return []string{r.MessageId} }

const contextPrefix = "_context_"

func (o oslo) DecodeRequest(d *amqp.Delivery, r *In) error {
	err := o.decodeBody(d.Body, r)
	if why, ok := unreadable(d); ok {
		return fmt.Errorf("%w: %v", ErrUnreadableHeaders, why)
	}
	return err
}

func (oslo) decodeBody(body []byte, r *In) error {
	message, err := unenvelope(body)
	if err != nil {
		return err
	}
	fields, err := membersOf(message)
	if err != nil {
		return err
	}
	str := func(key string) string {
		v := fields.get(key)
		if v == nil {
			return ""
		}
		if s, ok := plainString(v); ok { // as it is
			return s
		}
		var s string
		json.Unmarshal(v, &s) // null or not a string: ""
		return s
	}
	r.MsgID = str("_msg_id")
	if q := str("_reply_q"); q != "" && r.MsgID != "" {
		r.Reply = QueueRoute(q)
	}
	if timeout, err := strconv.ParseFloat(string(fields.get("_timeout")), 64); err == nil && timeout > 0 { // a JSON number, or none
		r.Heartbeat = time.Duration(min(timeout, 1e6) * float64(time.Second))
	}
	r.UniqueID = str("_unique_id")
	r.Namespace = str("namespace")
	r.Version = str("version")
	for _, m := range fields {
		if name, ok := bytes.CutPrefix(m.key, []byte(contextPrefix)); ok {
			v := m.value
			if r.Context == nil {
				r.Context = make(map[string]any)
			}
			var value any
			json.Unmarshal(v, &value) // a field of an object that decoded: it decodes
			r.Context[string(name)] = value
		}
	}
	r.Method = str("method")
	if r.Method == "" {
		return ErrNoMethod
	}
	if a := bytes.TrimSpace(fields.get("args")); len(a) > 0 && a[0] != '{' && !bytes.Equal(a, []byte("null")) {
		return ErrBadArgs
	}
	r.Args = fields.get("args")
	return nil
}

func (o oslo) EncodeReply(pub *amqp.Publishing, msgID, _ string, result any, failure *Failure) error {
	var res, fail []byte
	var err error
	if failure != nil {
		fail, err = json.Marshal(osloFailureOf(failure))
	} else {
		res, err = json.Marshal(result)
	}
	if err != nil {
		return err
	}
	envelope(pub, osloReplyMessage(res, fail, true, msgID))
	return nil
}

// osloReplyMessage is the message of a reply: result (JSON text; nil for
// null), failure (JSON text, sent as a string; nil for null), ending, the
// call's _msg_id and a _unique_id of its own.
func osloReplyMessage(result, failure []byte, ending bool, msgID string) []byte {
	m := make([]byte, 0, len(result)+len(failure)+len(failure)/4+160)
	m = append(m, `{"result": `...)
	if result == nil {
		result = []byte("null")
	}
	m = append(m, result...)
	m = append(m, `, "failure": `...)
	if failure == nil {
		m = append(m, "null"...)
	} else {
		m = appendQuoted(m, failure)
	}
	m = strconv.AppendBool(append(m, `, "ending": `...), ending)
	m = AppendJSONString(append(m, `, "_msg_id": `...), msgID)
	m = appendUniqueID(append(m, `, "_unique_id": `...))
	return append(m, '}')
}

// EncodeHeartbeat makes what oslo.messaging's servers send a caller that
// gave a _timeout, every half of it, while its method runs.
func (oslo) EncodeHeartbeat(pub *amqp.Publishing, msgID string) error {
	envelope(pub, osloReplyMessage(nil, nil, false, msgID))
	return nil
}

// SplitReplies hands each the message of reply d, unenveloped, with its
// _msg_id as id: a final reply when it says "ending": true; a heartbeat
// when it does not, and carries neither result nor failure; and otherwise
// a provisional result, which a final reply without one confirms (the
// two messages of oslo.messaging's servers before 4.0), as oslo.messaging's
// own client reads them.
func (oslo) SplitReplies(d *amqp.Delivery, each func(*Reply)) error {
	message, err := unenvelope(d.Body)
	if err != nil {
		return err
	}
	head := new(osloHead)
	if !head.scan(message) {
		*head = osloHead{}
		if err := json.Unmarshal(message, head); err != nil {
			return fmt.Errorf("%w: %v", ErrNotJSON, err)
		}
	}
	empty := absent(head.Result) && (absent(head.Failure) || string(head.Failure) == `""`)
	r := Reply{ID: head.MsgID, Empty: empty, Body: message, read: head}
	switch {
	case head.Ending:
	case empty:
		r.Kind = Beat
	default:
		r.Kind = Provisional
	}
	each(&r)
	return nil
}

// osloHead is what SplitReplies reads of a reply's message, and
// DecodeReply decodes the rest from.
type osloHead struct {
	MsgID   string          `json:"_msg_id"`
	Ending  bool            `json:"ending"`
	Result  json.RawMessage `json:"result"`
	Failure json.RawMessage `json:"failure"`
}

// osloHeadFields are osloHead's members, in the order of scan's switch.
var osloHeadFields = []string{"_msg_id", "ending", "result", "failure"}

// scan decodes message into h, as json.Unmarshal would, when message is
// as oslo.messaging and amqprpc write it (scan.go), and reports whether
// it was.
func (h *osloHead) scan(message []byte) bool {
	return scanWhole(message, osloHeadFields, func(n int, v []byte) (ok bool) {
		switch n {
		case 0:
			h.MsgID, ok = plainString(v)
		case 1:
			h.Ending, ok = plainBool(v)
		case 2:
			h.Result, ok = v, true
		case 3:
			h.Failure, ok = v, true
		}
		return ok
	})
}

// absent reports whether a JSON member is missing or null.
func absent(v json.RawMessage) bool { return len(v) == 0 || string(v) == "null" }

// DecodeReply decodes the result of r into result (unless result is nil),
// or returns its failure, from what SplitReplies read of it.
func (o oslo) DecodeReply(r *Reply, result any) (*Failure, error) {
	h, ok := r.read.(*osloHead)
	if !ok { // a Reply that SplitReplies did not make
		h = new(osloHead)
		if err := json.Unmarshal(r.Body, h); err != nil {
			return nil, fmt.Errorf("%w: %v", malformed("reply"), err)
		}
	}
	if !absent(h.Failure) {
		var text string
		if err := json.Unmarshal(h.Failure, &text); err != nil {
			return nil, fmt.Errorf("%w: %v", malformed("reply"), err)
		}
		if text != "" {
			var f osloFailure
			if err := json.Unmarshal([]byte(text), &f); err != nil {
				return nil, fmt.Errorf("%w: %v", malformed("failure"), err)
			}
			return f.failure(), nil
		}
	}
	if result != nil && len(h.Result) > 0 {
		if err := json.Unmarshal(h.Result, result); err != nil {
			return nil, fmt.Errorf("%w: %v", malformed("reply"), err)
		}
	}
	return nil, nil
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

// pythonExceptions are the builtin exceptions that failures of a code are
// sent as, when they name no class of their own, and the codes that
// builtin exceptions are received as. The codes not here go as
// amqprpc.<Code>Error, which Python callers raise as RemoteError.
var pythonExceptions = []struct{ class, code string }{
	{"ValueError", "invalid_argument"},
	{"TypeError", "invalid_argument"},
	{"ValueError", "malformed"},
	{"IndexError", "out_of_range"},
	{"LookupError", "not_found"},
	{"KeyError", "not_found"},
	{"FileExistsError", "already_exists"},
	{"PermissionError", "permission_denied"},
	{"PermissionError", "unauthenticated"},
	{"TimeoutError", "deadline_exceeded"},
	{"NotImplementedError", "unimplemented"},
	{"MemoryError", "resource_exhausted"},
}

// osloFailureOf is the Python exception that f is sent as: the one f
// names, else the builtin exception of its code, else amqprpc.<Code>Error.
func osloFailureOf(f *Failure) osloFailure {
	p := osloFailure{Module: f.Module, Class: f.Class, Message: f.Message, Traceback: []string{}, Args: []any{f.Message}, Kwargs: map[string]any{}}
	if p.Class != "" {
		return p
	}
	for _, x := range pythonExceptions {
		if x.code == f.Code {
			p.Module, p.Class = "builtins", x.class
			return p
		}
	}
	p.Module, p.Class = "amqprpc", codeClass(f.Code)
	return p
}

// failure is the Failure that p is received as, its code from the table
// above, from oslo.messaging's dispatcher's exceptions, or from
// amqprpc.<Code>Error; "unknown" otherwise.
func (p *osloFailure) failure() *Failure {
	f := &Failure{Code: "unknown", Message: p.Message, Module: p.Module, Class: p.Class, Traceback: p.Traceback}
	if p.Module == "exceptions" { // Python 2's builtins
		f.Module = "builtins"
	}
	switch f.Module {
	case "builtins":
		for _, x := range pythonExceptions {
			if x.class == p.Class {
				f.Code = x.code
				break
			}
		}
	case osloDispatcher:
		switch p.Class {
		case "NoSuchMethod":
			f.Code = "unimplemented"
		case "UnsupportedVersion":
			f.Code = "unsupported_version"
		}
	case "amqprpc":
		if code, ok := classCode(p.Class); ok {
			f.Code = code
		}
	}
	f.Module = p.Module
	return f
}

// codeClass is the name of the Python exception of a code that has no
// builtin one: internal -> InternalError.
func codeClass(code string) string {
	var b strings.Builder
	for w := range strings.SplitSeq(code, "_") {
		if w != "" {
			b.WriteString(strings.ToUpper(w[:1]) + w[1:])
		}
	}
	return b.String() + "Error"
}

// classCode is the code of a class codeClass made: InternalError ->
// internal.
func classCode(class string) (string, bool) {
	name, ok := strings.CutSuffix(class, "Error")
	if !ok || name == "" {
		return "", false
	}
	var b strings.Builder
	for i, c := range name {
		switch {
		case c >= 'A' && c <= 'Z':
			if i > 0 {
				b.WriteByte('_')
			}
			b.WriteRune(c - 'A' + 'a')
		case c >= 'a' && c <= 'z':
			b.WriteRune(c)
		default:
			return "", false
		}
	}
	return b.String(), codeClass(b.String()) == class
}
