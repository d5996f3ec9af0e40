package runtime_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/amqprpc/amqprpc/internal/testsvc"
	"github.com/amqprpc/amqprpc/runtime"
)

// fleet starts servers named names on topic and returns them by name.
func fleet(t *testing.T, topic string, names ...string) map[string]*testServer {
	t.Helper()
	servers := make(map[string]*testServer)
	for _, name := range names {
		servers[name] = serveAs(t, topic, name)
	}
	return servers
}

// eventually waits up to 10s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: %s", what)
		}
	}
}

func TestCast(t *testing.T) {
	topic := newTopic(t)
	srv := serve(t, topic)
	client := testsvc.NewFleetClient(dial(t), topic)
	ctx := ctxTimeout(t, 10*time.Second)

	for _, v := range []int{1, 2, 3} {
		if err := client.Record(ctx, v); err != nil {
			t.Fatalf("Record(%d): %v", v, err)
		}
	}
	eventually(t, "the server recorded 1+2+3", func() bool { return srv.fleet.Sum() == 6 })

	start := time.Now()
	err := testsvc.NewFleetClient(dial(t), newTopic(t)).Record(ctx, 1)
	if !errors.Is(err, runtime.ErrNoServer) {
		t.Fatalf("cast with no server: %v; want ErrNoServer", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("cast with no server took %v; the broker's return must end it", time.Since(start))
	}
}

func TestFanoutReachesEveryServer(t *testing.T) {
	topic := newTopic(t)
	servers := fleet(t, topic, "a", "b", "c")
	client := testsvc.NewFleetClient(dial(t), topic)
	ctx := ctxTimeout(t, 10*time.Second)

	for _, name := range []string{"a", "b", "c"} {
		if err := client.ToServer(name).Record(ctx, 5); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "each server recorded 5", func() bool {
		return servers["a"].fleet.Sum() == 5 && servers["b"].fleet.Sum() == 5 && servers["c"].fleet.Sum() == 5
	})
	if err := client.Reset(ctx); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	eventually(t, "every server reset", func() bool {
		return servers["a"].fleet.Sum() == 0 && servers["b"].fleet.Sum() == 0 && servers["c"].fleet.Sum() == 0
	})

	if err := testsvc.NewFleetClient(dial(t), newTopic(t)).Reset(ctx); !errors.Is(err, runtime.ErrNoServer) {
		t.Fatalf("fanout with no server: %v; want ErrNoServer", err)
	}
}

func TestGatherFromThreeServers(t *testing.T) {
	topic := newTopic(t)
	fleet(t, topic, "a", "b", "broken")
	client := testsvc.NewFleetClient(dial(t), topic)
	ctx := ctxTimeout(t, 10*time.Second)
	for name, v := range map[string]int{"a": 1, "b": 2} {
		if err := client.ToServer(name).Record(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	// A call after the casts on the same server queue runs after them.
	for _, name := range []string{"a", "b"} {
		if _, err := client.ToServer(name).Name(ctx); err != nil {
			t.Fatal(err)
		}
	}

	replies, err := client.GatherTotal(ctx, 3)
	if err != nil {
		t.Fatalf("GatherTotal(3): %v", err)
	}
	if len(replies) != 3 {
		t.Fatalf("GatherTotal(3) = %d replies; want 3", len(replies))
	}
	byServer := make(map[string]runtime.Reply[int])
	for _, r := range replies {
		byServer[r.Server] = r
	}
	if r := byServer["a"]; r.Err != nil || r.Value != 1 {
		t.Errorf("server a replied %+v; want 1", r)
	}
	if r := byServer["b"]; r.Err != nil || r.Value != 2 {
		t.Errorf("server b replied %+v; want 2", r)
	}
	if r := byServer["broken"]; r.Err == nil || remoteCode(r.Err) != runtime.CodeUnknown {
		t.Errorf("server broken replied %+v; want its error", r)
	}

	// Without a count, a gather collects until its deadline.
	short, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	replies, err = client.GatherTotal(short, 0)
	if err != nil || len(replies) != 3 {
		t.Fatalf("GatherTotal(0) = %d replies, %v; want 3, nil", len(replies), err)
	}
	// Wanting more replies than there are servers ends at the deadline
	// with those that came.
	short, cancel = context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	replies, err = client.GatherTotal(short, 4)
	if !errors.Is(err, context.DeadlineExceeded) || len(replies) != 3 {
		t.Fatalf("GatherTotal(4) = %d replies, %v; want 3 and a deadline error", len(replies), err)
	}

	if _, err := testsvc.NewFleetClient(dial(t), newTopic(t)).GatherTotal(ctx, 1); !errors.Is(err, runtime.ErrNoServer) {
		t.Fatalf("gather with no server: %v; want ErrNoServer", err)
	}
}

func TestTargetedCallsReachOnlyTheirServer(t *testing.T) {
	topic := newTopic(t)
	servers := fleet(t, topic, "a", "b", "c")
	client := testsvc.NewFleetClient(dial(t), topic)
	ctx := ctxTimeout(t, 10*time.Second)

	before := make(map[string]int64)
	for name, s := range servers {
		before[name] = s.fleet.Calls.Load()
	}
	const n = 20
	for range n {
		name, err := client.ToServer("b").Name(ctx)
		if err != nil || name != "b" {
			t.Fatalf("ToServer(b).Name() = %q, %v; want b", name, err)
		}
	}
	for name, s := range servers {
		want := before[name]
		if name == "b" {
			want += n
		}
		if got := s.fleet.Calls.Load(); got != want {
			t.Errorf("server %s ran %d methods; want %d", name, got-before[name], want-before[name])
		}
	}

	if _, err := client.ToServer("nobody").Name(ctx); !errors.Is(err, runtime.ErrNoServer) {
		t.Fatalf("call to a server that does not run: %v; want ErrNoServer", err)
	}

	// Untargeted calls are shared among the servers.
	seen := make(map[string]bool)
	for range 60 {
		name, err := client.Name(ctx)
		if err != nil {
			t.Fatal(err)
		}
		seen[name] = true
	}
	if len(seen) < 2 {
		t.Errorf("60 untargeted calls all went to %v; want them shared", seen)
	}
}

// TestErrorIdentityCrossesTheWire runs in memory (Local), through the
// encoding of errors that a broker carries.
func TestErrorIdentityCrossesTheWire(t *testing.T) {
	topic := "fleet"
	l := runtime.NewLocal(topic)
	t.Cleanup(func() { l.Close() })
	testsvc.RegisterFleetServer(l, testsvc.NewFleet("main"))
	client := testsvc.NewFleetClient(l, topic)
	ctx := ctxTimeout(t, 10*time.Second)

	if q, r, err := client.Divide(ctx, 7, 2); err != nil || q != 3 || r != 1 {
		t.Fatalf("Divide(7, 2) = %d, %d, %v; want 3, 1, nil", q, r, err)
	}

	_, _, err := client.Divide(ctx, 1, 0)
	if !errors.Is(err, testsvc.ErrDivideByZero) {
		t.Fatalf("Divide(1, 0): %v; want errors.Is ErrDivideByZero", err)
	}
	if rerr, ok := errors.AsType[*runtime.Error](err); !ok || rerr.Message != "divide 1: divide by zero" {
		t.Fatalf("Divide(1, 0): %v; want a *runtime.Error with the server's message", err)
	}

	err = client.Check(ctx, 11)
	if lerr, ok := errors.AsType[*testsvc.LimitError](err); !ok || lerr.Max != 10 {
		t.Fatalf("Check(11): %v; want errors.As a *LimitError with Max 10", err)
	}
	if errors.Is(err, testsvc.ErrDivideByZero) {
		t.Fatalf("Check(11) matches ErrDivideByZero")
	}

	err = client.Check(ctx, -1)
	if remoteCode(err) != runtime.CodeNotFound {
		t.Fatalf("Check(-1): %v; want code %s", err, runtime.CodeNotFound)
	}
	if _, ok := errors.AsType[*testsvc.LimitError](err); ok {
		t.Fatalf("Check(-1) is a *LimitError")
	}
}

// TestVersions runs in memory (Local): versions are the dispatch's and the
// client's, the same over a broker.
func TestVersions(t *testing.T) {
	topic := "fleet"
	l := runtime.NewLocal(topic)
	t.Cleanup(func() { l.Close() })
	fleet := testsvc.NewFleet("main")
	testsvc.RegisterFleetServer(l, fleet) // Fleet 1.2
	client := testsvc.NewFleetClient(l, topic)
	ctx := ctxTimeout(t, 10*time.Second)

	if got, err := client.Newer(ctx); err != nil || got != "newer" {
		t.Fatalf("Newer() = %q, %v", got, err)
	}
	calls := fleet.Calls.Load()
	if _, err := client.WithVersionCap("1.1").Newer(ctx); !errors.Is(err, runtime.ErrVersionCap) {
		t.Fatalf("Newer() under cap 1.1: %v; want ErrVersionCap", err)
	}
	if fleet.Calls.Load() != calls {
		t.Fatal("a call above the version cap reached the server")
	}
	if _, err := client.WithVersionCap("1.1").Name(ctx); err != nil {
		t.Fatalf("Name() (1.0) under cap 1.1: %v", err)
	}

	// Servers not yet upgraded: Fleet 1.1, and a Fleet 2.0 that shares no
	// version with this client.
	for _, tc := range []struct {
		version, method string
	}{{"1.1", "Newer"}, {"2.0", "Name"}} {
		old := testsvc.Fleet_ServiceDesc
		old.Version = tc.version
		l := runtime.NewLocal(topic)
		t.Cleanup(func() { l.Close() })
		l.Server("old").RegisterService(&old, testsvc.NewFleet("old"))

		client := testsvc.NewFleetClient(l, topic)
		var err error
		if tc.method == "Newer" {
			_, err = client.Newer(ctx)
		} else {
			_, err = client.Name(ctx)
		}
		if remoteCode(err) != runtime.CodeUnsupportedVersion {
			t.Errorf("%s() on a Fleet %s server: %v; want code %s", tc.method, tc.version, err, runtime.CodeUnsupportedVersion)
		}
	}

	// A server without the method at all says so.
	if err := invoke(ctx, l, topic, "newest", struct{}{}, nil); remoteCode(err) != runtime.CodeUnimplemented {
		t.Fatalf("a method no server has: %v; want code %s", err, runtime.CodeUnimplemented)
	}
}

// TestFanoutBesideOpenStack: amqprpc's fanout exchange is its own, so that
// an OpenStack service on the same topic, whose oslo.messaging declares
// "<topic>_fanout" auto-delete, starts whether amqprpc ran first or not.
func TestFanoutBesideOpenStack(t *testing.T) {
	topic := newTopic(t)
	ch := rawChannel(t)
	declareOslo := func() error { // as oslo.messaging declares it, and binds a queue
		if err := ch.ExchangeDeclare(topic+"_fanout", "fanout", false, true, false, false, nil); err != nil {
			return err
		}
		q, err := ch.QueueDeclare("", false, true, true, false, nil)
		if err == nil {
			err = ch.QueueBind(q.Name, topic, topic+"_fanout", false, nil)
		}
		return err
	}
	if err := declareOslo(); err != nil { // the OpenStack service first
		t.Fatal(err)
	}
	servers := fleet(t, topic, "a", "b")
	client := testsvc.NewFleetClient(dial(t), topic)
	if err := client.Reset(ctxTimeout(t, 5*time.Second)); err != nil {
		t.Fatalf("a fanout beside OpenStack's fanout exchange: %v", err)
	}
	replies, err := client.GatherTotal(ctxTimeout(t, 5*time.Second), len(servers))
	if err != nil || len(replies) != len(servers) {
		t.Fatalf("a gather beside OpenStack's fanout exchange: %d replies, %v", len(replies), err)
	}
	if err := declareOslo(); err != nil { // and the OpenStack service after amqprpc
		t.Fatalf("OpenStack's declaration after amqprpc's: %v", err)
	}
}
