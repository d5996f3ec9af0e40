package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	amqp "github.com/rabbitmq/amqp091-go"
)

func osloFor(s OsloSettings) oslo {
	if s.Exchange == "" {
		s.Exchange = "openstack"
	}
	return oslo{s}
}

// TestOsloTopology: what a Go peer declares is what oslo.messaging 14
// declares for the same settings (docs/PROTOCOL.md; WIRE.md §1, verified
// there with rabbitmqctl), for every object a Python peer declares too.
func TestOsloTopology(t *testing.T) {
	for _, tc := range []struct {
		name                string
		s                   OsloSettings
		durable, autoDelete bool
		args                string
	}{
		{"defaults", OsloSettings{}, false, false, "map[]"},
		{"amqp_durable_queues", OsloSettings{DurableQueues: true}, true, false, "map[]"},
		{"amqp_auto_delete", OsloSettings{AutoDelete: true}, false, true, "map[]"},
		{"rabbit_quorum_queue", OsloSettings{QuorumQueues: true, QuorumDeliveryLimit: 5}, true, false, "map[x-delivery-limit:5 x-queue-type:quorum]"},
		{"quorum limits", OsloSettings{QuorumQueues: true, QuorumMaxMemoryLength: 100, QuorumMaxMemoryBytes: 1 << 20}, true, false,
			"map[x-max-in-memory-bytes:1048576 x-max-in-memory-length:100 x-queue-type:quorum]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := osloFor(tc.s)
			if x := p.RequestExchange(); x != (Exchange{Name: "openstack", Kind: "topic", Durable: tc.durable, AutoDelete: tc.autoDelete}) {
				t.Errorf("control exchange: %+v", x)
			}
			if x := p.FanoutExchange("calc"); x != (Exchange{Name: "calc_fanout", Kind: "fanout", AutoDelete: true}) {
				t.Errorf("fanout exchange: %+v", x)
			}
			shared, own, fanout := p.ServerQueues("calc", "server1", "abc")
			for _, q := range []Queue{shared, own} {
				if q.Durable != tc.durable || q.AutoDelete != tc.autoDelete || q.Exclusive || fmt.Sprint(q.Args) != tc.args || !q.Mirrors {
					t.Errorf("queue %s: %+v", q.Name, q)
				}
			}
			if shared.Name != "calc" || own.Name != "calc.server1" {
				t.Errorf("queues %q and %q, want calc and calc.server1", shared.Name, own.Name)
			}
			// A Go peer's own queues, which no Python peer declares, are
			// exclusive, as RabbitMQ 4.3 wants.
			if fanout.Name != "calc_fanout_abc" || !fanout.Exclusive || fanout.Mirrors {
				t.Errorf("fanout queue: %+v", fanout)
			}
			if r := p.ReplyQueue("abc"); r.Name != "reply_abc" || !r.Exclusive {
				t.Errorf("reply queue: %+v", r)
			}
		})
	}
	if x := osloFor(OsloSettings{Exchange: "nova"}).RequestExchange(); x.Name != "nova" {
		t.Errorf("control exchange %q, want nova", x.Name)
	}
	if p := Oslo(OsloSettings{}); p.Batches != nil || p.Gathers || p.Heartbeats == nil || p.ErrNoGathers() == nil {
		t.Errorf("oslo.messaging's protocol: %+v; want heartbeats, and no batches or gathers", p)
	}
}

// capturedCall is a call oslo.messaging's client published (WIRE.md §2.4).
const capturedCall = `{"oslo.version": "2.0", "oslo.message": "{\"method\": \"add\", \"args\": {\"v1\": 2, \"v2\": 3}, \"_msg_id\": \"e244a2f22c2c4d6f8b0f8bc36eda9891\", \"_reply_q\": \"reply_7b6d16313f8048a287b701e1b9018965\", \"_timeout\": null, \"_unique_id\": \"4c9e903f11764ca0ab344a3c26fcc9d1\", \"_context_user_id\": \"u1\", \"_context_project_id\": \"p1\", \"_context_request_id\": \"req-abc\"}"}`

func TestOsloDecodesWhatOsloSends(t *testing.T) {
	p := osloFor(OsloSettings{})
	var r In
	if err := p.DecodeRequest(&amqp.Delivery{ContentType: "application/json", Body: []byte(capturedCall)}, &r); err != nil {
		t.Fatal(err)
	}
	if r.Method != "add" || string(r.Args) != `{"v1": 2, "v2": 3}` || r.MsgID != "e244a2f22c2c4d6f8b0f8bc36eda9891" ||
		r.Reply != (Route{Key: "reply_7b6d16313f8048a287b701e1b9018965"}) || r.Heartbeat != 0 || r.UniqueID != "4c9e903f11764ca0ab344a3c26fcc9d1" ||
		fmt.Sprint(r.Context) != "map[project_id:p1 request_id:req-abc user_id:u1]" || r.Version != "" || r.Namespace != "" {
		t.Errorf("decoded %+v", r)
	}
	for _, tc := range []struct{ body, want string }{
		// oslo.messaging's un-enveloped 1.0 format is accepted.
		{`{"method": "ping", "args": {}, "namespace": "admin", "version": "2.0", "_msg_id": "m", "_reply_q": "q", "_timeout": 4}`, "ping admin 2.0 4s"},
		// Casts have no _msg_id: no reply.
		{`{"oslo.version": "2.0", "oslo.message": "{\"method\": \"notify_me\", \"args\": {\"text\": \"hi\"}, \"_unique_id\": \"u\"}"}`, "notify_me  1.0 0s"},
	} {
		var r In
		if err := p.DecodeRequest(&amqp.Delivery{Body: []byte(tc.body)}, &r); err != nil {
			t.Errorf("%s: %v", tc.body, err)
			continue
		}
		if got := fmt.Sprintf("%s %s %s %v", r.Method, r.Namespace, VersionOr1(r.Version), r.Heartbeat); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.body, got, tc.want)
		}
	}
	for body, want := range map[string]error{
		`{"oslo.version": "2.1", "oslo.message": "{}"}`:         errOsloEnvelope,
		`{"oslo.version": "2.0", "oslo.message": "not json"}`:   ErrNotJSON,
		`{"oslo.version": "2.0", "oslo.message": "{}"}`:         ErrNoMethod,
		`{"method": "add", "args": [1, 2]}`:                     ErrBadArgs,
		`["method"]`:                                            ErrNotJSON,
		`{"oslo.version": "2.0", "oslo.message": "{\"x\": 1}"}`: ErrNoMethod,
	} {
		if err := p.DecodeRequest(&amqp.Delivery{Body: []byte(body)}, &In{}); !errors.Is(err, want) || !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want %v", body, err, want)
		}
	}
}

func TestOsloRequestRoundTrip(t *testing.T) {
	p := osloFor(OsloSettings{})
	out := Out{MsgID: "m1", Method: "add", Version: "1.1", Namespace: "admin", Args: map[string]int{"v1": 2}, ReplyTo: "reply_x",
		Heartbeat: 4 * time.Second, Context: map[string]any{"user_id": "u1", "roles": []any{"admin"}}}
	var pub amqp.Publishing
	if err := p.EncodeRequest(&pub, &out); err != nil {
		t.Fatal(err)
	}
	if pub.ContentType != "application/json" || pub.ContentEncoding != "utf-8" || pub.DeliveryMode != amqp.Persistent || pub.Headers != nil || pub.CorrelationId != "" || pub.ReplyTo != "" || pub.Type != "" {
		t.Errorf("properties: %+v", pub)
	}
	var in In
	if err := p.DecodeRequest(&amqp.Delivery{Body: pub.Body}, &in); err != nil {
		t.Fatal(err)
	}
	if in.MsgID != "m1" || in.Method != "add" || in.Version != "1.1" || in.Namespace != "admin" || string(in.Args) != `{"v1":2}` ||
		in.Reply.Key != "reply_x" || in.Heartbeat != 4*time.Second || fmt.Sprint(in.Context) != "map[roles:[admin] user_id:u1]" || in.UniqueID == "" {
		t.Errorf("decoded %+v", in)
	}
	// A cast: no _msg_id, _reply_q or _timeout; arguments of none are {}.
	pub = amqp.Publishing{}
	if err := p.EncodeRequest(&pub, &Out{MsgID: "m2", Method: "clear"}); err != nil {
		t.Fatal(err)
	}
	message, _ := unenvelope(pub.Body)
	if string(message) != `{"method":"clear","args":{},"_unique_id":`+string(bytes.TrimPrefix(message, []byte(`{"method":"clear","args":{},"_unique_id":`))) || bytes.Contains(message, []byte("_msg_id")) {
		t.Errorf("cast: %s", message)
	}
	if ids := p.ReturnedIDs(&amqp.Return{MessageId: pub.MessageId}); len(ids) != 1 || ids[0] != "m2" {
		t.Errorf("returned ids %v, want [m2]", ids)
	}
}

// TestOsloReplies: replies, heartbeats and the two messages of servers
// before oslo.messaging 4.0, as oslo.messaging's own client reads them.
func TestOsloReplies(t *testing.T) {
	p := osloFor(OsloSettings{})
	split := func(body []byte) *Reply {
		t.Helper()
		var got *Reply
		if err := p.SplitReplies(&amqp.Delivery{Body: body}, func(r *Reply) { got = r }); err != nil || got == nil {
			t.Fatalf("SplitReplies(%s) = %v", body, err)
		}
		return got
	}
	var pub amqp.Publishing
	if err := p.EncodeReply(&pub, "m1", "", 5, nil); err != nil {
		t.Fatal(err)
	}
	var n int
	if r := split(pub.Body); r.ID != "m1" || r.Kind != Final || r.Empty {
		t.Errorf("reply %s: %+v", r.Body, r)
	} else if f, err := p.DecodeReply(r, &n); f != nil || err != nil || n != 5 {
		t.Errorf("reply %s: result %d, %v, %v", r.Body, n, f, err)
	}
	pub = amqp.Publishing{}
	if err := p.EncodeHeartbeat(&pub, "m1"); err != nil {
		t.Fatal(err)
	}
	if r := split(pub.Body); r.Kind != Beat || r.ID != "m1" {
		t.Errorf("heartbeat %s: %+v", r.Body, r)
	}
	envelope := func(m string) []byte {
		b, _ := json.Marshal(map[string]string{"oslo.version": "2.0", "oslo.message": m})
		return b
	}
	for m, want := range map[string]string{
		`{"result": 7, "failure": null, "_msg_id": "m"}`:                     "provisional, not empty",
		`{"result": null, "failure": null, "ending": true, "_msg_id": "m"}`:  "final, empty",
		`{"result": null, "failure": null, "ending": false, "_msg_id": "m"}`: "beat, empty",
		`{"failure": "{}", "_msg_id": "m"}`:                                  "provisional, not empty",
	} {
		r := split(envelope(m))
		if got := fmt.Sprintf("%s, %s", [...]string{"final", "beat", "provisional"}[r.Kind], map[bool]string{true: "empty", false: "not empty"}[r.Empty]); got != want {
			t.Errorf("%s: %s; want %s", m, got, want)
		}
	}
	// A failure is a JSON text inside the message.
	pub = amqp.Publishing{}
	if err := p.EncodeReply(&pub, "m1", "", nil, &Failure{Code: "not_found", Message: "no such vm"}); err != nil {
		t.Fatal(err)
	}
	message, _ := unenvelope(pub.Body)
	var m struct{ Failure *string }
	if json.Unmarshal(message, &m); m.Failure == nil || !strings.Contains(*m.Failure, `"class":"LookupError","module":"builtins"`) {
		t.Errorf("failure %s", message)
	}
}

// TestOsloFailures: failures become the Python exceptions a Python caller
// catches, and Python exceptions become failures of their codes.
func TestOsloFailures(t *testing.T) {
	for _, tc := range []struct {
		f    Failure
		want string
	}{
		{Failure{Code: "resource_exhausted", Module: "nova.exception", Class: "QuotaError"}, "nova.exception.QuotaError"},
		{Failure{Code: "invalid_argument"}, "builtins.ValueError"},
		{Failure{Code: "not_found"}, "builtins.LookupError"},
		{Failure{Code: "permission_denied"}, "builtins.PermissionError"},
		{Failure{Code: "deadline_exceeded"}, "builtins.TimeoutError"},
		{Failure{Code: "internal"}, "amqprpc.InternalError"},
		{Failure{Code: "failed_precondition"}, "amqprpc.FailedPreconditionError"},
		{Failure{Code: "unimplemented", Module: osloDispatcher, Class: "NoSuchMethod"}, osloDispatcher + ".NoSuchMethod"},
	} {
		p := osloFailureOf(&tc.f)
		if got := p.Module + "." + p.Class; got != tc.want {
			t.Errorf("%+v: sent as %s, want %s", tc.f, got, tc.want)
		}
		if len(p.Args) != 1 || p.Kwargs == nil || p.Traceback == nil { // Python splats them: never null
			t.Errorf("%+v: args %v kwargs %v tb %v", tc.f, p.Args, p.Kwargs, p.Traceback)
		}
		want := tc.f.Code
		if tc.f.Module == "nova.exception" { // the runtime's OsloException maps it back
			want = "unknown"
		}
		if back := p.failure(); back.Code != want {
			t.Errorf("%s: received as code %s, want %s", tc.want, back.Code, want)
		}
	}
	for _, tc := range []struct{ module, class, code string }{
		{"builtins", "TypeError", "invalid_argument"},
		{"exceptions", "KeyError", "not_found"},
		{osloDispatcher, "UnsupportedVersion", "unsupported_version"},
		{"amqprpc", "FailedPreconditionError", "failed_precondition"},
		{"amqprpc", "Error", "unknown"},
		{"amqprpc", "Failed_PreconditionError", "unknown"},
		{"__main__", "CalcError", "unknown"},
	} {
		f := (&osloFailure{Module: tc.module, Class: tc.class, Message: "m", Traceback: []string{"tb"}}).failure()
		if f.Code != tc.code || f.Module != tc.module || f.Class != tc.class || f.Message != "m" {
			t.Errorf("%s.%s: %+v, want code %s", tc.module, tc.class, f, tc.code)
		}
	}
}

// TestOsloFind: a Go server dispatches as oslo.messaging's RPCDispatcher.
func TestOsloFind(t *testing.T) {
	calc := &Service{Name: "Calc", Version: "1.2"}
	admin := &Service{Name: "Admin", Version: "2.0", Namespace: "admin"}
	methods := map[string]*Service{"add": calc, "_private": calc, "ping": admin}
	all := []*Service{calc, admin}
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
		failure := (oslo{}).Find("calc", methods[tc.method], all, &In{Method: tc.method, Namespace: tc.namespace, Version: tc.version})
		got := ""
		if failure != nil {
			got = failure.Class
		} else {
			got = methods[tc.method].Name
		}
		if got != tc.want {
			t.Errorf("%s %q %q: %s, want %s", tc.method, tc.namespace, tc.version, got, tc.want)
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
	p := osloFor(OsloSettings{})
	f.Fuzz(func(t *testing.T, body []byte) {
		var r In
		if err := p.DecodeRequest(&amqp.Delivery{Body: body}, &r); err != nil {
			return
		}
		if r.Method == "" || r.Heartbeat < 0 || (r.Reply.OK() && r.MsgID == "") {
			t.Fatalf("accepted %q as %+v", body, r)
		}
	})
}

// BenchmarkOsloCall is what one call costs the two ends in oslo mode,
// without the network: the client encodes the request, the server decodes
// it and encodes the reply, the client reads the reply.
func BenchmarkOsloCall(b *testing.B) {
	o := osloFor(OsloSettings{})
	out := Out{MsgID: "6f0a8f4e2b8e4a8e9a541c1f5b7f5d2e", Method: "add", Args: &benchArgs{2, 3}, ReplyTo: "reply_1234567890abcdef", Heartbeat: 60 * time.Second}
	b.ReportAllocs()
	for b.Loop() {
		var req amqp.Publishing
		if err := o.EncodeRequest(&req, &out); err != nil {
			b.Fatal(err)
		}
		var in In
		if err := o.DecodeRequest(&amqp.Delivery{Body: req.Body}, &in); err != nil {
			b.Fatal(err)
		}
		var args benchArgs
		if err := json.Unmarshal(in.Args, &args); err != nil {
			b.Fatal(err)
		}
		var rep amqp.Publishing
		if err := o.EncodeReply(&rep, in.MsgID, "", args.V1+args.V2, nil); err != nil {
			b.Fatal(err)
		}
		var n int
		err := o.SplitReplies(&amqp.Delivery{Body: rep.Body}, func(r *Reply) {
			if f, err := o.DecodeReply(r, &n); f != nil || err != nil || n != 5 || r.ID != out.MsgID {
				b.Fatal(n, f, err)
			}
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzOsloEnvelope: whatever a message holds, the envelope is JSON, valid
// UTF-8, that oslo.messaging reads (json.loads, which reads what
// encoding/json does), and its message comes back as it went, or as
// encoding/json would have sent it (a byte that is not UTF-8 as U+FFFD).
func FuzzOsloEnvelope(f *testing.F) {
	f.Add(`{"result": "a \"quoted\" \\ <b> & é ☃ \u2028", "_msg_id": "m"}`)
	f.Add("\x00\x01\x1f\t\n\r\"\\\x7f")
	f.Add("")
	f.Add("caf\xe9 \xff\xfe ok \xe2\x82")
	f.Fuzz(func(t *testing.T, message string) {
		var want string
		q, _ := json.Marshal(message)
		json.Unmarshal(q, &want)
		var pub amqp.Publishing
		envelope(&pub, []byte(message))
		var env map[string]string
		if err := json.Unmarshal(pub.Body, &env); err != nil || !utf8.Valid(pub.Body) {
			t.Fatalf("envelope %q is not JSON in UTF-8: %v", pub.Body, err)
		}
		if env["oslo.version"] != "2.0" || env["oslo.message"] != want {
			t.Fatalf("envelope %q holds %q; want %q", pub.Body, env["oslo.message"], want)
		}
		got, err := unenvelope(pub.Body)
		if err != nil || string(got) != want {
			t.Fatalf("unenvelope = %q, %v; want %q", got, err, want)
		}
	})
}

// FuzzUnenvelopeAsSent: the envelope's fast path reads a body only as
// encoding/json does.
func FuzzUnenvelopeAsSent(f *testing.F) {
	f.Add([]byte(`{"oslo.version": "2.0", "oslo.message": "{\"method\": \"add\", \"args\": {\"s\": \"a\\\\\\\"b\"}}"}`))
	f.Add([]byte(`{"oslo.version": "2.0", "oslo.message": "\\u00e9"}`))
	f.Add([]byte(`{"oslo.version": "2.0", "oslo.message": "a\"b"}`))
	f.Add([]byte(`{"oslo.version": "2.0", "oslo.message": "x"} `))
	f.Fuzz(func(t *testing.T, body []byte) {
		m, ok := unenvelopeAsSent(body)
		if !ok {
			return
		}
		var env struct {
			Version string `json:"oslo.version"`
			Message string `json:"oslo.message"`
		}
		if err := json.Unmarshal(body, &env); err != nil || env.Version != "2.0" || env.Message != string(m) {
			t.Fatalf("fast path read %q from %q; encoding/json: %q, %v", m, body, env.Message, err)
		}
	})
}

// TestOsloStringFields: a request's string fields read as encoding/json
// reads them, escapes and bytes that are not UTF-8 included.
func TestOsloStringFields(t *testing.T) {
	for _, id := range []string{`"plain"`, `"a\"b"`, `"caf\u00e9"`, "\"a\xffb\"", `"é"`} {
		var want string
		json.Unmarshal([]byte(id), &want)
		var in In
		body := []byte(`{"method": "add", "args": {}, "_msg_id": ` + id + `, "_reply_q": "q"}`)
		if err := osloFor(OsloSettings{}).DecodeRequest(&amqp.Delivery{Body: body}, &in); err != nil || in.MsgID != want {
			t.Errorf("_msg_id %s read as %q, %v; want %q", id, in.MsgID, err, want)
		}
	}
}

// TestOsloUniqueIDs: each request and reply carries a _unique_id of its
// own, 32 hexadecimal digits, as oslo.messaging makes them.
func TestOsloUniqueIDs(t *testing.T) {
	o := osloFor(OsloSettings{})
	hex32 := regexp.MustCompile(`^[0-9a-f]{32}$`)
	seen := map[string]bool{}
	for range 3 {
		var pub amqp.Publishing
		if err := o.EncodeRequest(&pub, &Out{MsgID: "m", Method: "add", ReplyTo: "reply_q"}); err != nil {
			t.Fatal(err)
		}
		var in In
		if err := o.DecodeRequest(&amqp.Delivery{Body: pub.Body}, &in); err != nil {
			t.Fatal(err)
		}
		var reply struct {
			UniqueID string `json:"_unique_id"`
		}
		message, _ := unenvelope(osloReplyEnvelope(t, o))
		json.Unmarshal(message, &reply)
		for _, id := range []string{in.UniqueID, reply.UniqueID} {
			if !hex32.MatchString(id) || seen[id] {
				t.Errorf("_unique_id %q: not 32 hexadecimal digits, or seen before", id)
			}
			seen[id] = true
		}
	}
}

func osloReplyEnvelope(t *testing.T, o oslo) []byte {
	var pub amqp.Publishing
	if err := o.EncodeReply(&pub, "m", "", 5, nil); err != nil {
		t.Fatal(err)
	}
	return pub.Body
}
