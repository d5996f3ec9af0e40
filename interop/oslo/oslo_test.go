package oslo

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqprpc/amqprpc/internal/hostile"
	"github.com/amqprpc/amqprpc/runtime"
)

// python is Debian's interpreter, which sees Debian's python3-oslo.messaging.
const python = "/usr/bin/python3"

// brokerURL is the broker of the tests: make test's own node.
func brokerURL() string {
	if u := os.Getenv("AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

var (
	pythonOnce sync.Once
	pythonErr  error
)

// needOslo skips the test, saying why, when Debian's python3-oslo.messaging
// is not installed (make test installs it where it can); under CI it fails.
func needOslo(t *testing.T) {
	t.Helper()
	pythonOnce.Do(func() {
		out, err := exec.Command(python, "-c", "import oslo_messaging").CombinedOutput()
		if err != nil {
			pythonErr = fmt.Errorf("%s cannot import oslo_messaging (%v: %s); install Debian's python3-oslo.messaging (scripts/python-oslo.sh)", python, err, strings.TrimSpace(string(out)))
		}
	})
	if pythonErr != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(pythonErr)
		}
		t.Skip("SKIP: ", pythonErr)
	}
}

// setting is one deployment's [oslo_messaging_rabbit] options, for both
// peers.
type setting struct {
	name  string
	cfg   runtime.OsloConfig
	flags []string // the same, for py/peer.py
}

var settings = []setting{
	{"defaults", runtime.OsloConfig{}, nil},
	{"durable", runtime.OsloConfig{DurableQueues: true}, []string{"--durable"}},
	{"quorum", runtime.OsloConfig{QuorumQueues: true, QuorumDeliveryLimit: 5}, []string{"--quorum", "--delivery-limit", "5"}},
	{"auto_delete", runtime.OsloConfig{DurableQueues: true, AutoDelete: true}, []string{"--durable", "--auto-delete"}},
}

// deployment is a control exchange and a topic of their own, on which
// Go and Python peers of one setting meet.
type deployment struct {
	setting
	exchange, topic string
}

func newDeployment(t *testing.T, s setting) *deployment {
	id := strings.ReplaceAll(uuid.NewString(), "-", "")[:8]
	d := &deployment{setting: s, exchange: "interop-" + s.name + "-" + id, topic: "calc-" + id}
	d.cfg.ControlExchange = d.exchange
	d.cfg.Exceptions = Exceptions
	t.Cleanup(func() { d.remove(t) })
	return d
}

// remove deletes what the peers left on the broker: oslo.messaging's
// topic queues and exchanges outlive them.
func (d *deployment) remove(t *testing.T) {
	conn, err := amqp.Dial(brokerURL())
	if err != nil {
		t.Logf("cleanup: %v", err)
		return
	}
	defer conn.Close()
	for _, q := range []string{d.topic, d.topic + ".go-1", d.topic + ".go-2", d.topic + ".py-1", d.topic + ".py-2"} {
		if ch, err := conn.Channel(); err == nil {
			ch.QueueDelete(q, false, false, false)
			ch.Close()
		}
	}
	for _, x := range []string{d.exchange, d.topic + "_fanout"} {
		if ch, err := conn.Channel(); err == nil {
			ch.ExchangeDelete(x, false, false)
			ch.Close()
		}
	}
}

// pyArgs are the arguments of py/peer.py for d.
func (d *deployment) pyArgs() []string {
	url := "rabbit" + strings.TrimPrefix(brokerURL(), "amqp")
	return append([]string{"--url", url, "--exchange", d.exchange, "--topic", d.topic}, d.flags...)
}

// goServer serves Calc and Admin as name in d until the test ends.
func (d *deployment) goServer(t *testing.T, name string, opts ...runtime.ServerOption) *Machine {
	t.Helper()
	m := NewMachine(name)
	opts = append([]runtime.ServerOption{runtime.WithOslo(d.cfg), runtime.WithServerName(name), runtime.WithLogger(testLogger(t))}, opts...)
	s := runtime.NewServer(brokerURL(), d.topic, opts...)
	RegisterCalcServer(s, m)
	RegisterAdminServer(s, m)
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		if err := <-served; !errors.Is(err, runtime.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	waitConsumers(t, d.topic)
	return m
}

// waitConsumers waits until queue has a consumer more than before... or
// at least one, so that what is sent next reaches a server.
func waitConsumers(t *testing.T, queue string) {
	t.Helper()
	conn, err := amqp.Dial(brokerURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		q, err := ch.QueueDeclarePassive(queue, false, false, false, false, nil)
		ch.Close()
		if err == nil && q.Consumers > 0 {
			return
		}
	}
	t.Fatalf("no consumer on queue %s after 30s", queue)
}

// pyServer runs py/server.py as name in d until the test ends, and
// returns once it consumes.
func (d *deployment) pyServer(t *testing.T, name string) {
	t.Helper()
	cmd := exec.Command(python, append([]string{"py/server.py", "--server", name}, d.pyArgs()...)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &testWriter{t: t, prefix: name + ": "}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	listening := make(chan bool, 1)
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "listening" {
				listening <- true
			}
		}
		cmd.Wait()
	}()
	select {
	case <-listening:
	case <-exited:
		t.Fatalf("py/server.py %s exited before it listened", name)
	case <-time.After(60 * time.Second):
		t.Fatalf("py/server.py %s did not listen within 60s", name)
	}
}

// pyResult is one case of py/client.py.
type pyResult struct {
	Case   string          `json:"case"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Module, Class, Message string
		ExcType                *string `json:"exc_type"`
		CalcError              bool    `json:"calc_error"`
	} `json:"error"`
}

// pyClient runs py/client.py against d, for server (a server's name) and
// the cases given (all when none), and returns its results by case.
func (d *deployment) pyClient(t *testing.T, server string, cases ...string) map[string]pyResult {
	t.Helper()
	args := append([]string{"py/client.py", "--server", server, "--only", strings.Join(cases, ",")}, d.pyArgs()...)
	cmd := exec.Command(python, args...)
	cmd.Stderr = &testWriter{t: t, prefix: "client.py: "}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("py/client.py: %v\n%s", err, out)
	}
	results := make(map[string]pyResult)
	for line := range strings.Lines(string(out)) {
		var r pyResult
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("py/client.py printed %q: %v", line, err)
		}
		results[r.Case] = r
	}
	return results
}

// goClient is a Go client of d.
func (d *deployment) goClient(t *testing.T, opts ...runtime.ClientOption) *runtime.Client {
	t.Helper()
	c, err := runtime.Dial(brokerURL(), append([]runtime.ClientOption{runtime.WithOslo(d.cfg), runtime.WithLogger(testLogger(t)), runtime.WithTimeout(15 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(&testWriter{t: t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// testWriter logs what is written to it through t, until the test ends.
type testWriter struct {
	t      *testing.T
	prefix string
	mu     sync.Mutex
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	defer func() { recover() }() // a line after the test ended
	w.t.Log(w.prefix + strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var _ io.Writer = (*testWriter)(nil)

// ctxt is the request context both clients send.
var ctxt = map[string]any{"user_id": "u1", "project_id": "p1", "request_id": "req-abc", "global_request_id": "req-global", "auth_token": "secret-token"}

func equalJSON(t *testing.T, what string, got json.RawMessage, want any) {
	t.Helper()
	w, _ := json.Marshal(want)
	var g, wv any
	json.Unmarshal(got, &g)
	json.Unmarshal(w, &wv)
	if fmt.Sprint(g) != fmt.Sprint(wv) {
		t.Errorf("%s: got %s, want %s", what, got, w)
	}
}

// TestOsloClientCallsGoServer: the real oslo.messaging client calls a Go
// server in every way, with each setting.
func TestOsloClientCallsGoServer(t *testing.T) {
	needOslo(t)
	for _, s := range settings {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			d := newDeployment(t, s)
			d.goServer(t, "go-1")
			r := d.pyClient(t, "go-1")
			ok := func(c string, want any) {
				t.Helper()
				if r[c].Error != nil {
					t.Errorf("%s: %+v", c, *r[c].Error)
					return
				}
				equalJSON(t, c, r[c].Result, want)
			}
			fails := func(c, module, class string, excType string) {
				t.Helper()
				e := r[c].Error
				switch {
				case e == nil:
					t.Errorf("%s: no error, result %s", c, r[c].Result)
				case e.Module != module || e.Class != class || excType != "" && (e.ExcType == nil || *e.ExcType != excType):
					t.Errorf("%s: raised %s.%s (exc_type %v: %s), want %s.%s %s", c, e.Module, e.Class, e.ExcType, e.Message, module, class, excType)
				}
			}
			ok("call", 5)
			ok("call_versioned", 5)
			ok("server_call", "go-1")
			ok("cast", true)
			ok("server_cast", true)
			ok("fanout", true)
			fails("too_new", "oslo_messaging.rpc.client", "RemoteError", "UnsupportedVersion")
			fails("other_major", "oslo_messaging.rpc.client", "RemoteError", "UnsupportedVersion")
			fails("nosuch", "oslo_messaging.rpc.client", "RemoteError", "NoSuchMethod")
			fails("declared_error", "calcerrors_Remote", "CalcError_Remote", "")
			if e := r["declared_error"].Error; e != nil && (!e.CalcError || !strings.Contains(e.Message, "boom: calc failed")) {
				t.Errorf("declared_error: %+v is not a calcerrors.CalcError(\"boom: calc failed\")", *e)
			}
			fails("builtin_error", "builtins", "ValueError", "")
			fails("bad_args", "builtins", "TypeError", "")
			ok("context", ctxt)
			ok("namespace", map[string]any{"pong": true, "list": []any{1, 2.5, "x", nil}})
			ok("call_monitor", 3)
			ok("no_monitor", 4)
		})
	}
}

// TestGoClientCallsOsloServer: a Go client calls the real oslo.messaging
// server in every way, with each setting.
func TestGoClientCallsOsloServer(t *testing.T) {
	needOslo(t)
	for _, s := range settings {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			d := newDeployment(t, s)
			d.pyServer(t, "py-1")
			c := d.goClient(t)
			calc, admin, all := NewCalcClient(c, d.topic), NewAdminClient(c, d.topic), NewEveryoneClient(c, d.topic)
			ctx := runtime.WithOsloContext(context.Background(), ctxt)
			py1 := calc.ToServer("py-1")

			if n, err := calc.Add(ctx, 2, 3); n != 5 || err != nil {
				t.Errorf("call: %d, %v", n, err)
			}
			if name, err := py1.Name(ctx); name != "py-1" || err != nil {
				t.Errorf("server call: %q, %v", name, err)
			}
			for _, cast := range []struct {
				name, text string
				send       func(context.Context, string) error
				notes      *CalcClient
			}{
				{"cast", "hello cast", calc.NotifyMe, calc},
				{"server cast", "hello server", py1.NotifyMe, py1},
				{"fanout", "hello fanout", all.NotifyMe, py1},
			} {
				if err := cast.send(ctx, cast.text); err != nil {
					t.Errorf("%s: %v", cast.name, err)
					continue
				}
				if !eventually(func() bool { notes, _ := cast.notes.Notes(ctx); return slices.Contains(notes, cast.text) }) {
					t.Errorf("%s: %q never reached the server", cast.name, cast.text)
				}
			}
			var rerr *runtime.Error
			if _, err := calc.Mul(ctx, 2, 3); !errors.As(err, &rerr) || rerr.Code != runtime.CodeUnsupportedVersion || rerr.Class != "UnsupportedVersion" || rerr.Module != "oslo_messaging.rpc.dispatcher" {
				t.Errorf("too new: %v", err)
			}
			if err := c.Invoke(ctx, runtime.Request{Target: runtime.Target{Topic: d.topic}, Method: "nosuch", Service: &Calc_ServiceDesc}, nil); !errors.As(err, &rerr) || rerr.Code != runtime.CodeUnimplemented || rerr.Class != "NoSuchMethod" {
				t.Errorf("unknown method: %v", err)
			}
			if err := calc.Fail(ctx, "boom"); !errors.Is(err, ErrCalc) || !errors.As(err, &rerr) || rerr.Module != "calcerrors" || rerr.Class != "CalcError" || rerr.Message != "boom" || len(rerr.Traceback) == 0 {
				t.Errorf("declared error: %v", err)
			}
			if err := calc.FailBuiltin(ctx); !errors.As(err, &rerr) || rerr.Code != runtime.CodeInvalidArgument || rerr.Module != "builtins" || rerr.Class != "ValueError" {
				t.Errorf("builtin error: %v", err)
			}
			who, err := calc.Whoami(ctx)
			for k, v := range ctxt {
				if err != nil || who[k] != v {
					t.Errorf("context: %s = %v, want %v (%v)", k, who[k], v, err)
				}
			}
			if pong, err := admin.Ping(ctx); err != nil || !pong.Pong || fmt.Sprint(pong.List) != "[1 2.5 x <nil>]" {
				t.Errorf("namespace: %+v, %v", pong, err)
			}
			monitored := d.goClient(t, runtime.WithOslo(withMonitor(d.cfg, 2*time.Second)))
			if n, err := NewCalcClient(monitored, d.topic).SlowAdd(ctx, 1, 2, 4); n != 3 || err != nil {
				t.Errorf("call monitor: %d, %v", n, err)
			}
			if _, err := NewCalcClient(c, d.topic+"-nobody").Add(ctx, 1, 1); !errors.Is(err, runtime.ErrNoServer) {
				t.Errorf("a topic no server consumes: %v, want ErrNoServer", err)
			}
			if _, err := runtime.Gather[int](ctx, c, runtime.Request{Target: runtime.Target{Topic: d.topic}, Method: "add"}, 1); err == nil {
				t.Errorf("gather: no error from a protocol that has none")
			}
		})
	}
}

func withMonitor(cfg runtime.OsloConfig, d time.Duration) runtime.OsloConfig {
	cfg.CallMonitorTimeout = d
	return cfg
}

func eventually(cond func() bool) bool {
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return false
}

// TestGoAndPythonServersShareATopic: Go and Python servers of one topic,
// started in either order, with each setting, declare the same topology
// (none fails with a 406) and take turns with its calls; a fanout
// reaches both. In "go first", a Go client fanouts before any Python
// server ran, so that the Go side declares everything first.
func TestGoAndPythonServersShareATopic(t *testing.T) {
	needOslo(t)
	for _, s := range settings {
		for _, goFirst := range []bool{true, false} {
			order := map[bool]string{true: "go first", false: "python first"}[goFirst]
			t.Run(s.name+"/"+order, func(t *testing.T) {
				t.Parallel()
				d := newDeployment(t, s)
				c := d.goClient(t)
				ctx := runtime.WithOsloContext(context.Background(), ctxt)
				var machine *Machine
				if goFirst {
					// It declares the control exchange and <topic>_fanout,
					// and finds no server.
					if err := NewEveryoneClient(c, d.topic).NotifyMe(ctx, "before any server"); !errors.Is(err, runtime.ErrNoServer) {
						t.Fatalf("fanout before any server: %v, want ErrNoServer", err)
					}
					machine = d.goServer(t, "go-1")
					d.pyServer(t, "py-1")
				} else {
					d.pyServer(t, "py-1")
					machine = d.goServer(t, "go-1")
				}
				calc := NewCalcClient(c, d.topic)
				seen := map[string]int{}
				for range 20 {
					name, err := calc.Name(ctx)
					if err != nil {
						t.Fatalf("call: %v", err)
					}
					seen[name]++
				}
				if seen["go-1"] == 0 || seen["py-1"] == 0 {
					t.Errorf("Go client's calls answered by %v, want both servers", seen)
				}
				r := d.pyClient(t, "py-1", "names")
				equalJSON(t, "Python client's calls answered by", r["names"].Result, []string{"go-1", "py-1"})

				if err := NewEveryoneClient(c, d.topic).NotifyMe(ctx, "to everyone"); err != nil {
					t.Fatalf("fanout: %v", err)
				}
				if !eventually(func() bool { return slices.Contains(machine.Notes(), "to everyone") }) {
					t.Errorf("the fanout did not reach the Go server")
				}
				if !eventually(func() bool {
					notes, _ := calc.ToServer("py-1").Notes(ctx)
					return slices.Contains(notes, "to everyone")
				}) {
					t.Errorf("the fanout did not reach the Python server")
				}
			})
		}
	}
}

// rawChannel opens a plain amqp091-go channel, as a peer written without
// amqprpc would, closed when the test ends.
func rawChannel(t *testing.T) *amqp.Channel {
	t.Helper()
	conn, err := amqp.Dial(brokerURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// spy declares an exclusive queue bound to exchange with key and returns
// its deliveries.
func spy(t *testing.T, ch *amqp.Channel, exchange, key string) <-chan amqp.Delivery {
	t.Helper()
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, key, exchange, false, nil); err != nil {
		t.Fatal(err)
	}
	msgs, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

// checkOsloMessage fails t unless d is a message as oslo.messaging
// publishes them, with only the given keys (or keys prefixed _context_)
// in its message, and returns the message.
func checkOsloMessage(t *testing.T, what string, d amqp.Delivery, keys ...string) map[string]any {
	t.Helper()
	if d.ContentType != "application/json" || len(d.Headers) != 0 || d.ReplyTo != "" || d.CorrelationId != "" || d.Type != "" {
		t.Errorf("%s: properties content_type=%q headers=%v reply_to=%q correlation_id=%q type=%q; want only oslo.messaging's",
			what, d.ContentType, d.Headers, d.ReplyTo, d.CorrelationId, d.Type)
	}
	var env map[string]string
	if err := json.Unmarshal(d.Body, &env); err != nil || len(env) != 2 || env["oslo.version"] != "2.0" {
		t.Fatalf("%s: body %s is not oslo.messaging's 2.0 envelope (%v)", what, d.Body, err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(env["oslo.message"]), &m); err != nil {
		t.Fatalf("%s: oslo.message %q: %v", what, env["oslo.message"], err)
	}
	for k := range m {
		if !slices.Contains(keys, k) && !strings.HasPrefix(k, "_context_") {
			t.Errorf("%s: key %q in %s", what, k, env["oslo.message"])
		}
	}
	return m
}

var requestKeys = []string{"method", "args", "namespace", "version", "_msg_id", "_reply_q", "_timeout", "_unique_id"}

// TestNothingOfAmqprpcReachesAnOsloPeer: what Go clients and servers
// speaking oslo.messaging publish carries oslo.messaging's properties and
// keys alone: no amqprpc header, property, batch or key, even when many
// calls go at once (amqprpc would batch them).
func TestNothingOfAmqprpcReachesAnOsloPeer(t *testing.T) {
	d := newDeployment(t, settings[0])
	raw := rawChannel(t)
	c := d.goClient(t)
	// The client declared the control exchange; the fanout exchange is
	// declared here as oslo.messaging does.
	if err := raw.ExchangeDeclare(d.topic+"_fanout", "fanout", false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	requests, fanouts := spy(t, raw, d.exchange, d.topic), spy(t, raw, d.topic+"_fanout", "")
	ctx := runtime.WithOsloContext(context.Background(), ctxt)
	calc := NewCalcClient(c, d.topic)

	const calls = 50
	var wg sync.WaitGroup
	for range calls {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			calc.Add(ctx, 2, 3) // nobody answers
		})
	}
	for i := range calls {
		m := checkOsloMessage(t, fmt.Sprintf("call %d", i), receive(t, requests), requestKeys...)
		if m["method"] != "add" || fmt.Sprint(m["args"]) != "map[v1:2 v2:3]" || m["_msg_id"] == "" || !strings.HasPrefix(fmt.Sprint(m["_reply_q"]), "reply_") || m["_context_user_id"] != "u1" {
			t.Errorf("call %d: %v", i, m)
		}
	}
	wg.Wait()
	if err := calc.NotifyMe(ctx, "hi"); err != nil {
		t.Fatal(err)
	}
	if m := checkOsloMessage(t, "cast", receive(t, requests), requestKeys...); m["_msg_id"] != nil || m["_reply_q"] != nil {
		t.Errorf("cast: %v", m)
	}
	if err := NewEveryoneClient(c, d.topic).NotifyMe(ctx, "all"); err != nil {
		t.Fatal(err)
	}
	checkOsloMessage(t, "fanout", receive(t, fanouts), requestKeys...)

	// A Go server's replies, to the request oslo.messaging's client sent
	// in WIRE.md's capture, with a heartbeat first.
	d.goServer(t, "go-1")
	replies, err := raw.QueueDeclare("reply_"+d.topic, false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := raw.Consume(replies.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	inner, _ := json.Marshal(map[string]any{"method": "slow_add", "args": map[string]any{"v1": 2, "v2": 3, "delay": 2.5}, "_msg_id": "e244a2f22c2c4d6f8b0f8bc36eda9891",
		"_reply_q": replies.Name, "_timeout": 2, "_unique_id": "4c9e903f11764ca0ab344a3c26fcc9d1", "_context_user_id": "u1"})
	body, _ := json.Marshal(map[string]string{"oslo.version": "2.0", "oslo.message": string(inner)})
	if err := raw.Publish(d.exchange, d.topic, false, false, amqp.Publishing{ContentType: "application/json", ContentEncoding: "utf-8", DeliveryMode: 2, Expiration: "10000", Body: body}); err != nil {
		t.Fatal(err)
	}
	replyKeys := []string{"result", "failure", "ending", "_msg_id", "_unique_id"}
	beat := checkOsloMessage(t, "heartbeat", receive(t, got), replyKeys...)
	if beat["ending"] != false || beat["result"] != nil || beat["failure"] != nil || beat["_msg_id"] != "e244a2f22c2c4d6f8b0f8bc36eda9891" {
		t.Errorf("heartbeat: %v", beat)
	}
	for {
		m := checkOsloMessage(t, "reply", receive(t, got), replyKeys...)
		if m["ending"] == false {
			continue // another heartbeat
		}
		if m["ending"] != true || m["result"] != 5.0 || m["failure"] != nil || m["_msg_id"] != "e244a2f22c2c4d6f8b0f8bc36eda9891" {
			t.Errorf("reply: %v", m)
		}
		break
	}
}

func receive(t *testing.T, msgs <-chan amqp.Delivery) amqp.Delivery {
	t.Helper()
	select {
	case d := <-msgs:
		return d
	case <-time.After(10 * time.Second):
		t.Fatal("nothing received in 10s")
		return amqp.Delivery{}
	}
}

// TestHostileReplyQueues: an oslo.messaging request whose _reply_q no
// reply can go to (a direct reply-to address the broker does not know, a
// name longer than AMQP allows) costs its server nothing but that
// request: counted, and the next calls answered on the same connection.
// Before _reply_q went through the server's reply checks, the first made
// the broker close the server's connection, for every such request.
func TestHostileReplyQueues(t *testing.T) {
	d := newDeployment(t, settings[0])
	s := runtime.NewServer(brokerURL(), d.topic, runtime.WithOslo(d.cfg), runtime.WithServerName("go-1"), runtime.WithLogger(testLogger(t)))
	RegisterCalcServer(s, NewMachine("go-1"))
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		<-served
	}()
	waitConsumers(t, d.topic)
	raw := rawChannel(t)
	calc := NewCalcClient(d.goClient(t), d.topic)
	for i, q := range []string{hostile.UnknownNode, "reply_" + strings.Repeat("x", 300)} {
		inner, _ := json.Marshal(map[string]any{"method": "add", "args": map[string]int{"v1": 1, "v2": 2}, "_msg_id": fmt.Sprint("hostile-", i), "_reply_q": q})
		body, _ := json.Marshal(map[string]string{"oslo.version": "2.0", "oslo.message": string(inner)})
		if err := raw.Publish(d.exchange, d.topic, false, false, amqp.Publishing{ContentType: "application/json", Body: body}); err != nil {
			t.Fatal(err)
		}
		for range 5 {
			if n, err := calc.Add(context.Background(), 2, 3); n != 5 || err != nil {
				t.Fatalf("after a request with _reply_q %.40q: %d, %v", q, n, err)
			}
		}
	}
	if !eventually(func() bool { return s.Stats().Unanswerable == 2 }) {
		t.Errorf("stats %+v, want 2 unanswerable", s.Stats())
	}
}

// TestSettingsThatDifferFromTheDeployment: a Go server given other
// settings than the Python services that declared the topic's queue
// (here amqp_durable_queues on theirs, not on its) stops at once with
// ErrTopologyMismatch, which says what differs, rather than reconnect
// forever.
func TestSettingsThatDifferFromTheDeployment(t *testing.T) {
	d := newDeployment(t, settings[1]) // durable, as the deployment's
	ch := rawChannel(t)
	if _, err := ch.QueueDeclare(d.topic, true, false, false, false, nil); err != nil { // as an oslo.messaging server with amqp_durable_queues
		t.Fatal(err)
	}
	cfg := d.cfg
	cfg.DurableQueues = false
	cfg.ControlExchange += "-transient" // its exchange would differ too; the queue is what this test is about
	s := runtime.NewServer(brokerURL(), d.topic, runtime.WithOslo(cfg), runtime.WithLogger(testLogger(t)))
	RegisterCalcServer(s, NewMachine("go-1"))
	err := s.Serve()
	if !errors.Is(err, runtime.ErrTopologyMismatch) || !strings.Contains(err.Error(), "durable") || !strings.Contains(err.Error(), "OsloConfig") {
		t.Errorf("Serve: %v, want ErrTopologyMismatch saying durable differs", err)
	}
	ch.ExchangeDelete(cfg.ControlExchange, false, false)
}
