package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func osloFor(o OsloConfig) *osloProtocol {
	cfg := clientConfig([]ClientOption{WithOslo(o)})
	return newProtocol(&cfg).(*osloProtocol)
}

// TestOsloTopology: what a Go peer declares is what oslo.messaging 14
// declares for the same settings (docs/PROTOCOL.md; WIRE.md §1, verified
// there with rabbitmqctl), for every object a Python peer declares too.
func TestOsloTopology(t *testing.T) {
	for _, tc := range []struct {
		name                string
		cfg                 OsloConfig
		durable, autoDelete bool
		args                string
	}{
		{"defaults", OsloConfig{}, false, false, "map[]"},
		{"amqp_durable_queues", OsloConfig{DurableQueues: true}, true, false, "map[]"},
		{"amqp_auto_delete", OsloConfig{AutoDelete: true}, false, true, "map[]"},
		{"rabbit_quorum_queue", OsloConfig{QuorumQueues: true, QuorumDeliveryLimit: 5}, true, false, "map[x-delivery-limit:5 x-queue-type:quorum]"},
		{"quorum limits", OsloConfig{QuorumQueues: true, QuorumMaxMemoryLength: 100, QuorumMaxMemoryBytes: 1 << 20}, true, false,
			"map[x-max-in-memory-bytes:1048576 x-max-in-memory-length:100 x-queue-type:quorum]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := osloFor(tc.cfg)
			if x := p.requestExchange(); x != (exchangeSpec{name: "openstack", kind: "topic", durable: tc.durable, autoDelete: tc.autoDelete}) {
				t.Errorf("control exchange: %+v", x)
			}
			if x := p.fanoutExchange("calc"); x != (exchangeSpec{name: "calc_fanout", kind: "fanout", autoDelete: true}) {
				t.Errorf("fanout exchange: %+v", x)
			}
			shared, own, fanout := p.serverQueues("calc", "server1", "abc")
			for _, q := range []queueSpec{shared, own} {
				if q.durable != tc.durable || q.autoDelete != tc.autoDelete || q.exclusive || fmt.Sprint(q.args) != tc.args || !q.mirrors {
					t.Errorf("queue %s: %+v", q.name, q)
				}
			}
			if shared.name != "calc" || own.name != "calc.server1" {
				t.Errorf("queues %q and %q, want calc and calc.server1", shared.name, own.name)
			}
			// A Go peer's own queues, which no Python peer declares, are
			// exclusive, as RabbitMQ 4.3 wants.
			if fanout.name != "calc_fanout_abc" || !fanout.exclusive || fanout.mirrors {
				t.Errorf("fanout queue: %+v", fanout)
			}
			if r := p.replyQueue("abc"); r.name != "reply_abc" || !r.exclusive {
				t.Errorf("reply queue: %+v", r)
			}
		})
	}
	if x := osloFor(OsloConfig{ControlExchange: "nova"}).requestExchange(); x.name != "nova" {
		t.Errorf("control exchange %q, want nova", x.name)
	}
	cfg := clientConfig([]ClientOption{WithOslo(OsloConfig{ControlExchange: "nova"}), WithExchange("neutron")})
	if x := newProtocol(&cfg).requestExchange(); x.name != "neutron" {
		t.Errorf("WithExchange after WithOslo: %q, want neutron", x.name)
	}
	if cfg.ackAfterReply {
		t.Errorf("WithOslo: servers acknowledge after the reply; oslo.messaging's acknowledge first")
	}
}

// capturedCall is a call oslo.messaging's client published (WIRE.md §2.4).
const capturedCall = `{"oslo.version": "2.0", "oslo.message": "{\"method\": \"add\", \"args\": {\"v1\": 2, \"v2\": 3}, \"_msg_id\": \"e244a2f22c2c4d6f8b0f8bc36eda9891\", \"_reply_q\": \"reply_7b6d16313f8048a287b701e1b9018965\", \"_timeout\": null, \"_unique_id\": \"4c9e903f11764ca0ab344a3c26fcc9d1\", \"_context_user_id\": \"u1\", \"_context_project_id\": \"p1\", \"_context_request_id\": \"req-abc\"}"}`

func TestOsloDecodesWhatOsloSends(t *testing.T) {
	p := osloFor(OsloConfig{})
	var r inRequest
	if err := p.decodeRequest(&amqp.Delivery{ContentType: "application/json", Body: []byte(capturedCall)}, &r); err != nil {
		t.Fatal(err)
	}
	if r.method != "add" || string(r.args) != `{"v1": 2, "v2": 3}` || r.msgID != "e244a2f22c2c4d6f8b0f8bc36eda9891" ||
		r.reply != (route{key: "reply_7b6d16313f8048a287b701e1b9018965"}) || r.heartbeat != 0 || r.uniqueID != "4c9e903f11764ca0ab344a3c26fcc9d1" ||
		fmt.Sprint(r.context) != "map[project_id:p1 request_id:req-abc user_id:u1]" || r.version != "" || r.namespace != "" {
		t.Errorf("decoded %+v", r)
	}
	for _, tc := range []struct{ body, want string }{
		// oslo.messaging's un-enveloped 1.0 format is accepted.
		{`{"method": "ping", "args": {}, "namespace": "admin", "version": "2.0", "_msg_id": "m", "_reply_q": "q", "_timeout": 4}`, "ping admin 2.0 4s"},
		// Casts have no _msg_id: no reply.
		{`{"oslo.version": "2.0", "oslo.message": "{\"method\": \"notify_me\", \"args\": {\"text\": \"hi\"}, \"_unique_id\": \"u\"}"}`, "notify_me  1.0 0s"},
	} {
		var r inRequest
		if err := p.decodeRequest(&amqp.Delivery{Body: []byte(tc.body)}, &r); err != nil {
			t.Errorf("%s: %v", tc.body, err)
			continue
		}
		if got := fmt.Sprintf("%s %s %s %v", r.method, r.namespace, versionOr1(r.version), r.heartbeat); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.body, got, tc.want)
		}
	}
	for body, want := range map[string]error{
		`{"oslo.version": "2.1", "oslo.message": "{}"}`:         errOsloEnvelope,
		`{"oslo.version": "2.0", "oslo.message": "not json"}`:   errNotJSON,
		`{"oslo.version": "2.0", "oslo.message": "{}"}`:         errNoMethod,
		`{"method": "add", "args": [1, 2]}`:                     errBadArgs,
		`["method"]`:                                            errNotJSON,
		`{"oslo.version": "2.0", "oslo.message": "{\"x\": 1}"}`: errNoMethod,
	} {
		if err := p.decodeRequest(&amqp.Delivery{Body: []byte(body)}, &inRequest{}); !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", body, err, want)
		}
	}
}

func TestOsloRequestRoundTrip(t *testing.T) {
	p := osloFor(OsloConfig{})
	out := outRequest{msgID: "m1", method: "add", version: "1.1", namespace: "admin", args: map[string]int{"v1": 2}, replyTo: "reply_x",
		heartbeat: 4 * time.Second, context: map[string]any{"user_id": "u1", "roles": []any{"admin"}}}
	var pub amqp.Publishing
	if err := p.encodeRequest(&pub, &out); err != nil {
		t.Fatal(err)
	}
	if pub.ContentType != "application/json" || pub.ContentEncoding != "utf-8" || pub.DeliveryMode != amqp.Persistent || pub.Headers != nil || pub.CorrelationId != "" || pub.ReplyTo != "" || pub.Type != "" {
		t.Errorf("properties: %+v", pub)
	}
	var in inRequest
	if err := p.decodeRequest(&amqp.Delivery{Body: pub.Body}, &in); err != nil {
		t.Fatal(err)
	}
	if in.msgID != "m1" || in.method != "add" || in.version != "1.1" || in.namespace != "admin" || string(in.args) != `{"v1":2}` ||
		in.reply.key != "reply_x" || in.heartbeat != 4*time.Second || fmt.Sprint(in.context) != "map[roles:[admin] user_id:u1]" || in.uniqueID == "" {
		t.Errorf("decoded %+v", in)
	}
	// A cast: no _msg_id, _reply_q or _timeout; arguments of none are {}.
	pub = amqp.Publishing{}
	if err := p.encodeRequest(&pub, &outRequest{msgID: "m2", method: "clear"}); err != nil {
		t.Fatal(err)
	}
	message, _ := unenvelope(pub.Body)
	if string(message) != `{"method":"clear","args":{},"_unique_id":`+string(bytes.TrimPrefix(message, []byte(`{"method":"clear","args":{},"_unique_id":`))) || bytes.Contains(message, []byte("_msg_id")) {
		t.Errorf("cast: %s", message)
	}
	if ids := p.returnedIDs(&amqp.Return{MessageId: pub.MessageId}); len(ids) != 1 || ids[0] != "m2" {
		t.Errorf("returned ids %v, want [m2]", ids)
	}
}

func TestOsloReplies(t *testing.T) {
	p := osloFor(OsloConfig{})
	var pub amqp.Publishing
	if err := p.encodeReply(&pub, "m1", "", 5, nil); err != nil {
		t.Fatal(err)
	}
	var reply *amqp.Delivery
	if batch, err := p.splitReplies(&amqp.Delivery{Body: pub.Body}, func(d *amqp.Delivery) { reply = d }); !batch || err != nil || reply == nil {
		t.Fatalf("splitReplies: %v %v", batch, err)
	}
	var n int
	if p.replyID(reply) != "m1" || p.isHeartbeat(reply) || p.decodeReply(reply, &n) != nil || n != 5 {
		t.Errorf("reply %s: id %q, result %d", reply.Body, p.replyID(reply), n)
	}
	pub = amqp.Publishing{}
	if err := p.encodeHeartbeat(&pub, "m1"); err != nil {
		t.Fatal(err)
	}
	p.splitReplies(&amqp.Delivery{Body: pub.Body}, func(d *amqp.Delivery) { reply = d })
	if !p.isHeartbeat(reply) || p.replyID(reply) != "m1" {
		t.Errorf("heartbeat %s", reply.Body)
	}
	// A failure is a JSON text inside the message.
	pub = amqp.Publishing{}
	if err := p.encodeReply(&pub, "m1", "", nil, &Error{Code: CodeNotFound, Message: "no such vm"}); err != nil {
		t.Fatal(err)
	}
	message, _ := unenvelope(pub.Body)
	var m struct{ Failure *string }
	if json.Unmarshal(message, &m); m.Failure == nil || !strings.Contains(*m.Failure, `"class":"LookupError","module":"builtins"`) {
		t.Errorf("failure %s", message)
	}
}

// TestOsloFailures: Go errors become the Python exceptions a Python
// caller catches, and Python exceptions become *Errors with their codes.
func TestOsloFailures(t *testing.T) {
	errQuota := errors.New("quota")
	p := osloFor(OsloConfig{Exceptions: []OsloException{
		{Module: "nova.exception", Class: "QuotaError", Err: errQuota, Code: CodeResourceExhausted},
		{Module: "nova.exception", Class: "Conflict", Code: CodeAborted},
	}})
	for _, tc := range []struct {
		err  *Error
		want string
	}{
		{toError(fmt.Errorf("wrapped: %w", errQuota), &ServiceDesc{}), "nova.exception.QuotaError"},
		{&Error{Code: CodeAborted}, "nova.exception.Conflict"},
		{&Error{Code: CodeInvalidArgument}, "builtins.ValueError"},
		{&Error{Code: CodeNotFound}, "builtins.LookupError"},
		{&Error{Code: CodePermissionDenied}, "builtins.PermissionError"},
		{&Error{Code: CodeDeadlineExceeded}, "builtins.TimeoutError"},
		{&Error{Code: CodeInternal}, "amqprpc.InternalError"},
		{&Error{Code: CodeFailedPrecondition}, "amqprpc.FailedPreconditionError"},
		{&Error{Code: CodeUnimplemented, Module: osloDispatcher, Class: "NoSuchMethod"}, osloDispatcher + ".NoSuchMethod"},
	} {
		f := p.failureOf(tc.err)
		if got := f.Module + "." + f.Class; got != tc.want {
			t.Errorf("%v: sent as %s, want %s", tc.err, got, tc.want)
		}
		if len(f.Args) != 1 || f.Kwargs == nil || f.Traceback == nil { // Python splats them: never null
			t.Errorf("%v: args %v kwargs %v tb %v", tc.err, f.Args, f.Kwargs, f.Traceback)
		}
		// and back, as a Go client of a Go server receives it: with the
		// code of the error, or of the OsloException that maps it
		want := tc.err.Code
		if tc.want == "nova.exception.QuotaError" {
			want = CodeResourceExhausted
		}
		if back := p.errorOf(&f); back.Code != want {
			t.Errorf("%s: received as code %s, want %s", tc.want, back.Code, want)
		}
	}
	for _, tc := range []struct {
		module, class string
		code          Code
	}{
		{"builtins", "TypeError", CodeInvalidArgument},
		{"exceptions", "KeyError", CodeNotFound},
		{osloDispatcher, "UnsupportedVersion", CodeUnsupportedVersion},
		{"nova.exception", "QuotaError", CodeResourceExhausted},
		{"nova.exception", "InstanceNotFound", CodeUnknown},
		{"__main__", "CalcError", CodeUnknown},
	} {
		e := p.errorOf(&osloFailure{Module: tc.module, Class: tc.class, Message: "m", Traceback: []string{"tb"}})
		if e.Code != tc.code || e.Module != tc.module || e.Class != tc.class || e.Message != "m" {
			t.Errorf("%s.%s: %+v, want code %s", tc.module, tc.class, e, tc.code)
		}
	}
	if e := p.errorOf(&osloFailure{Module: "nova.exception", Class: "QuotaError"}); !errors.Is(e, errQuota) {
		t.Errorf("%v is not the error OsloException maps it to", e)
	}
}

// TestOsloFind: a Go server dispatches as oslo.messaging's RPCDispatcher.
func TestOsloFind(t *testing.T) {
	p := osloFor(OsloConfig{})
	calc := &ServiceDesc{ServiceName: "Calc", Version: "1.2"}
	admin := &ServiceDesc{ServiceName: "Admin", Version: "2.0", Namespace: "admin"}
	methods := map[string]method{"add": {desc: calc}, "_private": {desc: calc}, "ping": {desc: admin}}
	for _, tc := range []struct {
		method, namespace, version string
		want                       string
	}{
		{"add", "", "", "Calc"},
		{"add", "", "1.2", "Calc"},
		{"add", "", "1.1.7", "Calc"},
		{"add", "", "1.2.1", "UnsupportedVersion"}, // revisions count when minors are equal
		{"add", "", "1.3", "UnsupportedVersion"},
		{"add", "", "2.0", "UnsupportedVersion"},
		{"nosuch", "", "", "NoSuchMethod"},
		{"_private", "", "", "NoSuchMethod"},
		{"ping", "admin", "2.0", "Admin"},
		{"ping", "", "", "NoSuchMethod"},               // Calc serves namespace None 1.0
		{"add", "admin", "2.0", "NoSuchMethod"},        // Admin serves admin 2.0
		{"ping", "other", "1.0", "UnsupportedVersion"}, // as oslo.messaging says of a wrong namespace
	} {
		m, failure := p.find("calc", methods, &inRequest{method: tc.method, namespace: tc.namespace, version: tc.version})
		got := ""
		if failure != nil {
			got = failure.Class
		} else {
			got = m.desc.ServiceName
		}
		if got != tc.want {
			t.Errorf("%s %q %q: %s, want %s", tc.method, tc.namespace, tc.version, got, tc.want)
		}
	}
}

// TestOsloContextHidesTheToken: a request context logs without its
// auth_token, which travels in clear.
func TestOsloContextHidesTheToken(t *testing.T) {
	ctx := WithOsloContext(context.Background(), map[string]any{"user_id": "u1", "auth_token": "secret-token"})
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("request", "context", OsloContext(ctx))
	if strings.Contains(buf.String(), "secret-token") || !strings.Contains(buf.String(), `"user_id":"u1"`) {
		t.Errorf("logged %s", buf.String())
	}
	if OsloContext(ctx)["auth_token"] != "secret-token" {
		t.Errorf("the method does not see the token")
	}
	if OsloContext(context.Background()) != nil {
		t.Errorf("a context without one has one")
	}
}

func TestRecentIDs(t *testing.T) {
	var r recentIDs
	if r.repeats("a") || !r.repeats("a") {
		t.Fatal("a second a is not a repeat")
	}
	for i := range len(r.ring) {
		r.repeats(fmt.Sprint(i))
	}
	if r.repeats("a") || len(r.ids) != len(r.ring) {
		t.Errorf("a is remembered past %d ids, or the memory grows (%d)", len(r.ring), len(r.ids))
	}
}

func TestHeartbeatInterval(t *testing.T) {
	for timeout, want := range map[time.Duration]time.Duration{0: 0, time.Second: 0, 2 * time.Second: time.Second, 5 * time.Second: 2 * time.Second, 60 * time.Second: 30 * time.Second} {
		if got := heartbeatInterval(timeout); got != want {
			t.Errorf("heartbeatInterval(%v) = %v, want %v", timeout, got, want)
		}
	}
}

// FuzzDecodeOsloRequest: the oslo.messaging decoding of a server never
// panics, and what it accepts can be dispatched.
func FuzzDecodeOsloRequest(f *testing.F) {
	for _, body := range []string{
		capturedCall,
		`{"method": "ping", "args": {}, "namespace": "admin", "version": "2.0", "_msg_id": "m", "_reply_q": "q", "_timeout": 4}`,
		`{"oslo.version": "2.0", "oslo.message": "{\"method\": 1}"}`,
		`{"oslo.version": "9", "oslo.message": ""}`,
		`{"method": "add", "_timeout": 1e308, "_context_x": {"deep": [1, {"a": null}]}}`,
		`{"method": "add", "args": null, "_msg_id": ["x"]}`,
		``,
	} {
		f.Add([]byte(body))
	}
	p := osloFor(OsloConfig{})
	f.Fuzz(func(t *testing.T, body []byte) {
		var r inRequest
		if err := p.decodeRequest(&amqp.Delivery{Body: body}, &r); err != nil {
			return
		}
		if r.method == "" || r.heartbeat < 0 || (r.reply.ok() && r.msgID == "") {
			t.Fatalf("accepted %q as %+v", body, r)
		}
	})
}
