package runtime_test

import (
	"context"
	"errors"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqprpc/amqprpc/internal/testsvc"
	"github.com/amqprpc/amqprpc/runtime"
)

// ownNode skips t unless the tests run against a broker node of their own
// (make test: scripts/cluster.sh, AMQPRPC_CLUSTER_DIR), whose users they
// may add.
func ownNode(t *testing.T) {
	t.Helper()
	if os.Getenv("AMQPRPC_CLUSTER_DIR") == "" {
		t.Skip("not the tests' own broker node (make test starts one): users not added")
	}
}

// rabbitmqctl runs rabbitmqctl on the tests' own node.
func rabbitmqctl(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("../scripts/cluster.sh", append([]string{"ctl", "1"}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("rabbitmqctl %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// permissionsDemo runs scripts/permissions.sh demo for topic (with args
// before it, such as --oslo) on the tests' own node: users topic-service,
// topic-caller and topic-stranger, deleted when the test ends.
func permissionsDemo(t *testing.T, topic string, args ...string) {
	t.Helper()
	cmd := exec.Command("../scripts/permissions.sh", append(args, "demo", topic)...)
	cmd.Env = append(os.Environ(), "RABBITMQCTL=../scripts/cluster.sh ctl 1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/permissions.sh demo: %v: %s", err, out)
	}
	t.Cleanup(func() {
		for _, u := range []string{"service", "caller", "stranger"} {
			exec.Command("../scripts/cluster.sh", "ctl", "1", "delete_user", topic+"-"+u).Run()
		}
	})
}

// urlAs is the tests' broker URL with user's credentials, its password
// being its name (permissionsDemo).
func urlAs(user string) string {
	u, err := url.Parse(brokerURL())
	if err != nil {
		panic(err)
	}
	u.User = url.UserPassword(user, user)
	return u.String()
}

// callers records the callers of the requests a server runs, by method.
type callers struct {
	mu  sync.Mutex
	by  map[string]runtime.Identity // the last, by method
	all map[string]map[runtime.Identity]int
}

func (c *callers) interceptor(ctx context.Context, info *runtime.ServerInfo, next runtime.Handler) (any, error) {
	c.mu.Lock()
	if c.by == nil {
		c.by = make(map[string]runtime.Identity)
		c.all = make(map[string]map[runtime.Identity]int)
	}
	id := runtime.Caller(ctx)
	c.by[info.Method] = id
	if c.all[info.Method] == nil {
		c.all[info.Method] = make(map[runtime.Identity]int)
	}
	c.all[info.Method][id]++
	c.mu.Unlock()
	return next(ctx)
}

// of returns the last caller of method.
func (c *callers) of(method string) (runtime.Identity, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id, ok := c.by[method]
	return id, ok
}

// every returns how many requests of method each caller sent.
func (c *callers) every(method string) map[runtime.Identity]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.all[method])
}

// TestCallerVerifiedByBroker: a server of minimal permissions
// (scripts/permissions.sh --declared: not even configure on the request
// exchange) sees a client of minimal permissions as the broker user it
// logged in as, verified, in every call mode; the broker refuses a
// user_id that is not the connection's user, and the client says so
// (ErrAccessRefused).
func TestCallerVerifiedByBroker(t *testing.T) {
	ownNode(t)
	if err := rawChannel(t).ExchangeDeclare(runtime.DefaultExchange, "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err) // what --declared says: the exchange is there
	}
	topic := newTopic(t)
	permissionsDemo(t, topic, "--declared")
	seen := new(callers)
	serveVia(t, urlAs(topic+"-service"), topic, "main", runtime.WithServerInterceptors(seen.interceptor))

	c, err := runtime.Dial(urlAs(topic + "-caller"))
	if err != nil {
		t.Fatalf("Dial as %s-caller: %v", topic, err)
	}
	defer c.Close()
	ctx := ctxTimeout(t, 10*time.Second)
	fleet := testsvc.NewFleetClient(c, topic)
	if sum, err := testsvc.NewArithClient(c, topic).Add(ctx, 2, 3); err != nil || sum != 5 {
		t.Fatalf("Add = %d, %v", sum, err)
	}
	if _, err := fleet.ToServer("main").Name(ctx); err != nil {
		t.Fatalf("Name to server main: %v", err)
	}
	if err := fleet.Record(ctx, 1); err != nil { // a cast
		t.Fatalf("Record (cast): %v", err)
	}
	if err := fleet.Reset(ctx); err != nil { // a fanout
		t.Fatalf("Reset (fanout): %v", err)
	}
	if _, err := fleet.GatherTotal(ctx, 1); err != nil {
		t.Fatalf("GatherTotal: %v", err)
	}
	waitFor(t, func() bool { _, ok := seen.of("reset"); _, ok2 := seen.of("record"); return ok && ok2 })
	want := runtime.Identity{User: topic + "-caller", Verified: true}
	// Calls that go several to a message carry their user all the same.
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := testsvc.NewArithClient(c, topic).Sum(ctx, 1, 2); err != nil {
				t.Errorf("Sum: %v", err)
			}
		}()
	}
	wg.Wait()
	if c.Stats().BatchedCalls == 0 {
		t.Error("no call went in a batch; the test must send some")
	}
	if got := seen.every("sum"); len(got) != 1 || got[want] != 64 {
		t.Errorf("the callers of 64 sums, some in batches: %v; want all %+v", got, want)
	}
	for _, m := range []string{"add", "name", "record", "reset", "total"} {
		if id, ok := seen.of(m); !ok || id != want {
			t.Errorf("%s: the server saw %+v (ran: %v); want %+v", m, id, ok, want)
		}
	}

	// A user_id that is not the login's: the broker closes the channel,
	// the call says why.
	forged, err := runtime.Dial(urlAs(topic+"-caller"), runtime.WithUserID(topic+"-service"))
	if err != nil {
		t.Fatal(err)
	}
	defer forged.Close()
	_, err = testsvc.NewArithClient(forged, topic).Add(ctxTimeout(t, 5*time.Second), 1, 1)
	if !errors.Is(err, runtime.ErrAccessRefused) || !strings.Contains(err.Error(), "user_id") {
		t.Fatalf("Add with a forged user_id: %v; want ErrAccessRefused with the broker's words", err)
	}
	t.Logf("a forged user_id: %v", err)
}

// waitFor waits up to 5 s for cond.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTopicPermissions: a user without write permission on a topic
// (RabbitMQ's topic permissions) gets ErrAccessRefused with the broker's
// words, at once, and its client goes on serving its other calls; the
// user with it calls.
func TestTopicPermissions(t *testing.T) {
	ownNode(t)
	topic := newTopic(t)
	permissionsDemo(t, topic)
	serveVia(t, urlAs(topic+"-service"), topic, "main")

	other := topic + "-other" // the stranger's own topic, served by guest
	t.Cleanup(func() { rawChannel(t).QueueDelete(other, false, false, false) })
	serveVia(t, brokerURL(), other, "main")

	stranger, err := runtime.Dial(urlAs(topic + "-stranger"))
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	// A call of the stranger's that waits for its reply when the broker
	// refuses another gets its reply: replies come on a channel that
	// publishes nothing, and a refusal closes only the channel it was on.
	slow := make(chan error, 1)
	go func() {
		slow <- testsvc.NewArithClient(stranger, other).Sleep(ctxTimeout(t, 10*time.Second), time.Second)
	}()
	time.Sleep(300 * time.Millisecond) // the Sleep call is published
	arith := testsvc.NewArithClient(stranger, topic)
	start := time.Now()
	_, err = arith.Add(ctxTimeout(t, 10*time.Second), 1, 2)
	if !errors.Is(err, runtime.ErrAccessRefused) || !strings.Contains(err.Error(), "topic '"+topic+"'") {
		t.Fatalf("Add by a user without the topic's permission: %v; want ErrAccessRefused naming the topic", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("the refusal took %v; want it at once", took)
	}
	t.Logf("refused: %v", err)
	// Tried again at once, the refusal is remembered: nothing is sent,
	// nothing closes.
	if _, err := arith.Add(ctxTimeout(t, 5*time.Second), 1, 2); !errors.Is(err, runtime.ErrAccessRefused) {
		t.Fatalf("Add again: %v; want ErrAccessRefused", err)
	}
	if err := <-slow; err != nil {
		t.Errorf("a call waiting for its reply when another was refused: %v; want its reply", err)
	}
	if n := stranger.Stats().Reconnects; n != 0 {
		t.Errorf("the client reconnected %d times; a refusal closes a channel, not the connection", n)
	}
	// The client goes on with what its user may do: its own topic.
	if sum, err := testsvc.NewArithClient(stranger, other).Add(ctxTimeout(t, 10*time.Second), 1, 2); err != nil || sum != 3 {
		t.Fatalf("Add to the stranger's own topic: %d, %v", sum, err)
	}
	// Calls published just before and just after a refused one, on the
	// same channel: the broker takes those before and drops those after;
	// each gets its reply all the same (those after go again), in either
	// profile, with or without batching.
	for _, opts := range [][]runtime.ClientOption{
		{runtime.WithBatching(false)},
		{runtime.WithBatching(false), runtime.WithProfile(runtime.Safe)},
		nil,
	} {
		c, err := runtime.Dial(urlAs(topic+"-stranger"), opts...)
		if err != nil {
			t.Fatal(err)
		}
		refused := make(chan error, 1)
		var wg sync.WaitGroup
		var failures atomic.Int32
		for i := range 40 {
			if i == 10 {
				go func() {
					_, err := testsvc.NewArithClient(c, topic).Add(ctxTimeout(t, 5*time.Second), 1, 2)
					refused <- err
				}()
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if sum, err := testsvc.NewArithClient(c, other).Add(ctxTimeout(t, 5*time.Second), 1, 2); err != nil || sum != 3 {
					failures.Add(1)
					t.Logf("a bystander: %d, %v", sum, err)
				}
			}()
			time.Sleep(50 * time.Microsecond)
		}
		wg.Wait()
		if err := <-refused; !errors.Is(err, runtime.ErrAccessRefused) {
			t.Errorf("options %d: the refused call: %v; want ErrAccessRefused", len(opts), err)
		}
		if n := failures.Load(); n > 0 {
			t.Errorf("options %d: %d of 40 calls published around a refused one failed; want each its reply", len(opts), n)
		}
		c.Close()
	}

	// Every other mode is refused alike: a cast, a fanout and a gather
	// (the topic's fanout exchange is not the stranger's to publish to), a
	// call in confirm mode.
	fleet := testsvc.NewFleetClient(stranger, topic)
	if err := fleet.Record(ctxTimeout(t, 10*time.Second), 1); !errors.Is(err, runtime.ErrAccessRefused) {
		t.Errorf("Record (cast) by the stranger: %v; want ErrAccessRefused", err)
	}
	if err := fleet.Reset(ctxTimeout(t, 10*time.Second)); !errors.Is(err, runtime.ErrAccessRefused) {
		t.Errorf("Reset (fanout) by the stranger: %v; want ErrAccessRefused", err)
	}
	if _, err := fleet.GatherTotal(ctxTimeout(t, 10*time.Second), 1); !errors.Is(err, runtime.ErrAccessRefused) {
		t.Errorf("GatherTotal by the stranger: %v; want ErrAccessRefused", err)
	}
	safe, err := runtime.Dial(urlAs(topic+"-stranger"), runtime.WithProfile(runtime.Safe))
	if err != nil {
		t.Fatal(err)
	}
	defer safe.Close()
	if _, err := testsvc.NewArithClient(safe, topic).Add(ctxTimeout(t, 10*time.Second), 1, 2); !errors.Is(err, runtime.ErrAccessRefused) {
		t.Errorf("Add in confirm mode (Safe) by the stranger: %v; want ErrAccessRefused", err)
	}

	caller, err := runtime.Dial(urlAs(topic + "-caller"))
	if err != nil {
		t.Fatal(err)
	}
	defer caller.Close()
	if sum, err := testsvc.NewArithClient(caller, topic).Add(ctxTimeout(t, 10*time.Second), 1, 2); err != nil || sum != 3 {
		t.Fatalf("Add by the caller: %d, %v", sum, err)
	}

	// A server without a server's permissions says so, at once: the
	// caller may not declare the exchange; the stranger, given a server's
	// permissions but no topic permission to publish, may not ask whether
	// a server of its name serves already.
	cmd := exec.Command("../scripts/permissions.sh", "--declared", "server", topic+"-stranger", topic)
	cmd.Env = append(os.Environ(), "RABBITMQCTL=../scripts/cluster.sh ctl 1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/permissions.sh server: %v: %s", err, out)
	}
	rabbitmqctl(t, "set_topic_permissions", topic+"-stranger", runtime.DefaultExchange, "^$", ".*")
	for _, user := range []string{topic + "-caller", topic + "-stranger"} {
		srv := runtime.NewServer(urlAs(user), topic, runtime.WithServerName("second"))
		testsvc.RegisterArithServer(srv, new(testsvc.ArithImpl))
		served := make(chan error, 1)
		go func() { served <- srv.Serve() }()
		select {
		case err := <-served:
			if !errors.Is(err, runtime.ErrAccessRefused) {
				t.Errorf("Serve as %s: %v; want ErrAccessRefused", user, err)
			}
			t.Logf("Serve as %s: %v", user, err)
		case <-time.After(10 * time.Second):
			srv.Shutdown(context.Background())
			t.Errorf("Serve as %s still runs after 10 s; want ErrAccessRefused at once", user)
		}
	}
}

// TestAnonymousAndForgedRequests: what a server sees of requests that plain
// AMQP clients publish: none with no user_id (anonymous; refused with
// WithAnonymousCallers(false)); a forged user_id never arrives, the broker
// closing the publisher's channel; an impersonator's arrives as the user
// it names, which is what the broker's impersonator tag means.
func TestAnonymousAndForgedRequests(t *testing.T) {
	ownNode(t)
	topic := newTopic(t)
	permissionsDemo(t, topic)
	seen := new(callers)
	serveVia(t, urlAs(topic+"-service"), topic, "main", runtime.WithServerInterceptors(seen.interceptor))
	strict := newTopic(t)
	strictSrv := serveVia(t, brokerURL(), strict, "main", runtime.WithAnonymousCallers(false),
		runtime.WithAuthorization(runtime.Policy{Methods: map[string][]string{"sum": {"user:nobody"}, "*": {"verified"}}}))

	// send publishes a request for add as a plain AMQP client logged in
	// with url would, with user as its user_id.
	send := func(url, key string, user string) (*amqp.Channel, <-chan amqp.Delivery) {
		t.Helper()
		ch := rawChannelAt(t, url)
		q, replies := replyQueue(t, ch)
		publish(t, ch, key, amqp.Publishing{ContentType: "application/json", CorrelationId: "1", ReplyTo: q, UserId: user,
			Body: []byte(`{"method":"add","args":{"v1":1,"v2":2},"msg_id":"1"}`)})
		return ch, replies
	}
	answer := func(replies <-chan amqp.Delivery) (string, bool) {
		t.Helper()
		select {
		case d, ok := <-replies:
			return string(d.Body), ok
		case <-time.After(5 * time.Second):
			t.Fatal("no reply")
		}
		return "", false
	}

	// No user_id: anonymous.
	_, replies := send(brokerURL(), topic, "")
	if body, _ := answer(replies); body != `{"result":3}` {
		t.Fatalf("reply to an anonymous request: %s", body)
	}
	if id, _ := seen.of("add"); id != (runtime.Identity{}) {
		t.Errorf("an anonymous request's caller: %+v; want the zero Identity", id)
	}
	// Refused where the server serves no anonymous caller.
	before := strictSrv.Stats() // waitServing's probes, refused too
	_, replies = send(brokerURL(), strict, "")
	if body, _ := answer(replies); !strings.Contains(body, `"code":"unauthenticated"`) {
		t.Fatalf("reply to an anonymous request on a server that refuses them: %s", body)
	}
	if n := strictSrv.Stats().Unauthenticated - before.Unauthenticated; n != 1 {
		t.Errorf("Stats().Unauthenticated grew by %d; want 1", n)
	}
	_, replies = send(brokerURL(), strict, "guest") // guest's own name: verified
	if body, _ := answer(replies); body != `{"result":3}` {
		t.Fatalf("reply to guest's request on a server that refuses anonymous callers: %s", body)
	}
	// A verified caller the policy does not admit: permission_denied,
	// counted.
	c := dial(t)
	if _, err := testsvc.NewArithClient(c, strict).Sum(ctxTimeout(t, 5*time.Second), 1, 2); remoteCode(err) != runtime.CodePermissionDenied {
		t.Fatalf("Sum by guest, which the policy gives to nobody: %v; want permission_denied", err)
	}
	if st := strictSrv.Stats(); st.Denied-before.Denied != 1 || st.Unauthenticated-before.Unauthenticated != 1 {
		t.Errorf("Stats grew by: Denied %d, Unauthenticated %d; want 1 and 1", st.Denied-before.Denied, st.Unauthenticated-before.Unauthenticated)
	}
	if !strings.Contains(strictSrv.logs.String(), "amqprpc: request refused") {
		t.Errorf("no log line of the refusals: %s", strictSrv.logs.String())
	}

	// A forged user_id: the broker closes the channel, and the server
	// sees nothing.
	ch, replies := send(urlAs(topic+"-caller"), topic, topic+"-service")
	if _, ok := answer(replies); ok {
		t.Fatal("a request with a forged user_id was answered")
	}
	if !ch.IsClosed() {
		t.Error("the forger's channel is open; the broker must close it")
	}

	// An impersonator: its word is taken.
	rabbitmqctl(t, "set_user_tags", topic+"-stranger", "impersonator")
	rabbitmqctl(t, "set_topic_permissions", topic+"-stranger", runtime.DefaultExchange, ".*", ".*")
	_, replies = send(urlAs(topic+"-stranger"), topic, "someone-else")
	if body, _ := answer(replies); body != `{"result":3}` {
		t.Fatalf("reply to an impersonator's request: %s", body)
	}
	if id, _ := seen.of("add"); id != (runtime.Identity{User: "someone-else", Verified: true}) {
		t.Errorf("an impersonator's request's caller: %+v; want the user it named", id)
	}
}

// TestCallerByCertificate: a client that logs in with its certificate
// (EXTERNAL; the test node names the user after the certificate's common
// name) is that user, verified, when WithUserID names it, and anonymous
// when it does not.
func TestCallerByCertificate(t *testing.T) {
	ownNode(t)
	dir := tlsFiles(t)
	const user = "amqprpc test client" // the test certificate's common name
	rabbitmqctl(t, "add_user", user, "unused-password")
	t.Cleanup(func() { exec.Command("../scripts/cluster.sh", "ctl", "1", "delete_user", user).Run() })
	rabbitmqctl(t, "set_permissions", user, ".*", ".*", ".*")
	topic := newTopic(t)
	seen := new(callers)
	serveVia(t, brokerURL(), topic, "main", runtime.WithServerInterceptors(seen.interceptor))

	external := "amqps://" + os.Getenv("AMQPRPC_TLS_ADDR") + "/?auth_mechanism=external"
	for _, tc := range []struct {
		opts []runtime.ClientOption
		want runtime.Identity
	}{
		{[]runtime.ClientOption{runtime.WithUserID(user)}, runtime.Identity{User: user, Verified: true}},
		{nil, runtime.Identity{}},
	} {
		c, err := runtime.Dial(external, append(tc.opts, runtime.WithTLS(tlsConfig(t, dir, true)))...)
		if err != nil {
			t.Fatalf("Dial with the client certificate (EXTERNAL): %v", err)
		}
		if sum, err := testsvc.NewArithClient(c, topic).Add(ctxTimeout(t, 5*time.Second), 2, 3); err != nil || sum != 5 {
			t.Fatalf("Add = %d, %v", sum, err)
		}
		c.Close()
		if id, _ := seen.of("add"); id != tc.want {
			t.Errorf("the caller by certificate, options %d: %+v; want %+v", len(tc.opts), id, tc.want)
		}
	}
}

// TestOsloCallerAndPermissions: in oslo mode, with the permissions of
// scripts/permissions.sh --oslo, a Go client's requests carry its broker
// user beside the OpenStack identity of its request context, a policy
// admits by either, and a user without the topic's permission is refused
// by the broker.
func TestOsloCallerAndPermissions(t *testing.T) {
	ownNode(t)
	topic := newTopic(t)
	permissionsDemo(t, topic, "--oslo")
	t.Cleanup(func() {
		ch := rawChannel(t)
		ch.QueueDelete(topic, false, false, false)
		ch.QueueDelete(topic+".main", false, false, false)
	})
	oslo := runtime.WithOslo(runtime.OsloConfig{})
	seen := new(callers)
	srv := runtime.NewServer(urlAs(topic+"-service"), topic, oslo, runtime.WithServerName("main"),
		runtime.WithServerInterceptors(seen.interceptor),
		runtime.WithAuthorization(runtime.Policy{Methods: map[string][]string{
			"add": {"oslo-project:p1"},
			"sum": {"user:" + topic + "-caller"},
		}}))
	testsvc.RegisterArithServer(srv, new(testsvc.ArithImpl))
	testsvc.RegisterFleetServer(srv, testsvc.NewFleet("main"))
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})

	// The caller may not declare the control exchange: it dials once the
	// server has (on a new broker, Dial says why it cannot before).
	c, err := runtime.Dial(urlAs(topic+"-caller"), oslo)
	for deadline := time.Now().Add(10 * time.Second); errors.Is(err, runtime.ErrAccessRefused) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		c, err = runtime.Dial(urlAs(topic+"-caller"), oslo)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := runtime.WithOsloContext(ctxTimeout(t, 10*time.Second), map[string]any{"user_id": "u1", "project_id": "p1"})
	arith := testsvc.NewArithClient(c, topic)
	sum, err := arith.Add(ctx, 1, 2)
	for errors.Is(err, runtime.ErrNoServer) { // until the server's queue is there
		select {
		case err := <-served:
			t.Fatalf("Serve as %s-service: %v", topic, err)
		case <-time.After(20 * time.Millisecond):
		}
		sum, err = arith.Add(ctx, 1, 2)
	}
	if err != nil || sum != 3 {
		t.Fatalf("add from project p1: %d, %v", sum, err)
	}
	if want := (runtime.Identity{User: topic + "-caller", Verified: true, OsloUser: "u1", OsloProject: "p1"}); func() runtime.Identity { id, _ := seen.of("add"); return id }() != want {
		id, _ := seen.of("add")
		t.Errorf("the caller of add: %+v; want %+v", id, want)
	}
	if sum, err := arith.Sum(ctxTimeout(t, 10*time.Second), 1, 2); err != nil || sum != 3 {
		t.Fatalf("sum by the broker user the policy names: %d, %v", sum, err)
	}
	if _, err := arith.Div(ctx, 4, 2); remoteCode(err) != runtime.CodePermissionDenied {
		t.Fatalf("div, which the policy names for nobody: %v; want permission_denied", err)
	}
	// A cast and a fanout, under the same permissions (the policy lets
	// nobody run them: the server refuses them, unanswered, once taken).
	fleet := testsvc.NewFleetClient(c, topic)
	if err := fleet.Record(ctx, 1); err != nil {
		t.Errorf("Record (cast): %v", err)
	}
	if err := fleet.Reset(ctx); err != nil {
		t.Errorf("Reset (fanout): %v", err)
	}
	waitFor(t, func() bool { return srv.Stats().Denied >= 3 }) // div, record, reset

	stranger, err := runtime.Dial(urlAs(topic+"-stranger"), oslo)
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	if _, err := testsvc.NewArithClient(stranger, topic).Add(ctx, 1, 2); !errors.Is(err, runtime.ErrAccessRefused) {
		t.Fatalf("add by a user without the topic's permission: %v; want ErrAccessRefused", err)
	}
}
