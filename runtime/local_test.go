package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/amqprpc/amqprpc/describe"
	"github.com/amqprpc/amqprpc/internal/testsvc"
	"github.com/amqprpc/amqprpc/runtime"
)

// These tests run without a broker: a Local serves the test services in
// memory, through the same dispatch and encoding as a Server.

func newLocal(t *testing.T, opts ...runtime.LocalOption) (*runtime.Local, map[string]*testsvc.FleetImpl) {
	t.Helper()
	l := runtime.NewLocal("fleet", opts...)
	t.Cleanup(func() { l.Close() })
	fleets := map[string]*testsvc.FleetImpl{}
	for _, name := range []string{"a", "b"} {
		fleets[name] = testsvc.NewFleet(name)
		testsvc.RegisterFleetServer(l.Server(name), fleets[name])
	}
	return l, fleets
}

func TestLocalModes(t *testing.T) {
	l, fleets := newLocal(t)
	fleet := testsvc.NewFleetClient(l, "fleet")
	ctx := context.Background()

	seen := map[string]bool{}
	for range 4 {
		name, err := fleet.Name(ctx)
		if err != nil {
			t.Fatal(err)
		}
		seen[name] = true
	}
	if !seen["a"] || !seen["b"] {
		t.Errorf("calls went to %v, want both servers in turn", seen)
	}
	if name, err := fleet.ToServer("b").Name(ctx); name != "b" || err != nil {
		t.Errorf("call to b: %q, %v", name, err)
	}
	if _, err := fleet.ToServer("c").Name(ctx); !errors.Is(err, runtime.ErrNoServer) {
		t.Errorf("call to c: %v, want ErrNoServer", err)
	}
	// A cast to each server, a gather of both, a fanout to both.
	if fleet.ToServer("a").Record(ctx, 5) != nil || fleet.ToServer("b").Record(ctx, 7) != nil {
		t.Fatal("casts failed")
	}
	if !eventuallyTrue(func() bool { return fleets["a"].Sum() == 5 && fleets["b"].Sum() == 7 }) {
		t.Fatalf("after casts of 5 to a and 7 to b: a %d, b %d", fleets["a"].Sum(), fleets["b"].Sum())
	}
	replies, err := fleet.GatherTotal(ctx, 2)
	totals := map[string]int{}
	for _, r := range replies {
		totals[r.Server] = r.Value
	}
	if err != nil || len(totals) != 2 || totals["a"] != 5 || totals["b"] != 7 {
		t.Errorf("gather: %v, %v", replies, err)
	}
	if err := fleet.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	l.Close() // waits for the fanout
	if fleets["a"].Sum() != 0 || fleets["b"].Sum() != 0 {
		t.Errorf("after the fanout: a %d, b %d", fleets["a"].Sum(), fleets["b"].Sum())
	}
	if _, err := fleet.Name(ctx); !errors.Is(err, runtime.ErrClosed) {
		t.Errorf("call on a closed Local: %v", err)
	}
}

func TestLocalErrorsAndVersions(t *testing.T) {
	l, _ := newLocal(t)
	fleet := testsvc.NewFleetClient(l, "fleet")
	ctx := context.Background()
	if _, _, err := fleet.Divide(ctx, 1, 0); !errors.Is(err, testsvc.ErrDivideByZero) || remoteCode(err) != runtime.CodeUnknown {
		t.Errorf("declared sentinel: %v", err)
	}
	var limit *testsvc.LimitError
	if err := fleet.Check(ctx, 11); !errors.As(err, &limit) || limit.Max != 10 {
		t.Errorf("declared type: %v", err)
	}
	if err := fleet.Check(ctx, -1); remoteCode(err) != runtime.CodeNotFound {
		t.Errorf("code: %v", err)
	}
	if _, err := fleet.WithVersionCap("1.1").Newer(ctx); !errors.Is(err, runtime.ErrVersionCap) {
		t.Errorf("version cap: %v", err)
	}
	if err := l.Invoke(ctx, runtime.Request{Target: runtime.Target{Topic: "fleet"}, Method: "newer", Since: "1.3"}, nil); remoteCode(err) != runtime.CodeUnsupportedVersion {
		t.Errorf("too new: %v", err)
	}
	if err := l.Invoke(ctx, runtime.Request{Target: runtime.Target{Topic: "fleet"}, Method: "nope", Args: struct{}{}}, nil); remoteCode(err) != runtime.CodeUnimplemented {
		t.Errorf("unknown method: %v", err)
	}
	if err := l.Invoke(ctx, runtime.Request{Target: runtime.Target{Topic: "fleet"}, Method: "check", Args: map[string]any{"m": 1}}, nil); remoteCode(err) != runtime.CodeInvalidArgument {
		t.Errorf("misspelt argument: %v", err)
	}
}

// TestLocalDeadlinesAndCallers: a method sees its caller's deadline; a
// caller that gives up gets its context's error at once.
func TestLocalDeadlinesAndCallers(t *testing.T) {
	l := runtime.NewLocal("arith", runtime.WithTimeout(time.Second))
	t.Cleanup(func() { l.Close() })
	testsvc.RegisterArithServer(l, new(testsvc.ArithImpl))
	arith := testsvc.NewArithClient(l, "arith")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	want, _ := ctx.Deadline()
	if at, set, err := arith.Deadline(ctx); err != nil || !set || at.Sub(want).Abs() > time.Millisecond {
		t.Errorf("Deadline: %v %v %v, want %v", at, set, err, want)
	}
	start := time.Now()
	if err := arith.Sleep(ctx, time.Minute); !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Errorf("Sleep past the deadline: %v after %v", err, time.Since(start))
	}
	if err := arith.Crash(context.Background()); remoteCode(err) != runtime.CodeInternal {
		t.Errorf("panic: %v", err)
	}
}

// TestLocalInterceptorsAndMetadata: a Local runs both sides' interceptors
// and carries metadata, as a broker would.
func TestLocalInterceptorsAndMetadata(t *testing.T) {
	var order []string
	l, _ := newLocal(t,
		runtime.WithClientInterceptors(func(ctx context.Context, req *runtime.Request, reply any, next runtime.Invoke) error {
			order = append(order, "client "+req.Mode.String())
			return next(runtime.WithMetadata(ctx, runtime.Metadata{"tenant": "t1"}), req, reply)
		}),
		runtime.WithServerInterceptors(func(ctx context.Context, info *runtime.ServerInfo, next runtime.Handler) (any, error) {
			order = append(order, "server "+info.Method+" "+runtime.IncomingMetadata(ctx)["tenant"])
			return next(ctx)
		}))
	if _, err := testsvc.NewFleetClient(l, "fleet").ToServer("a").Name(context.Background()); err != nil {
		t.Fatal(err)
	}
	if want := []string{"client call", "server name t1"}; !slices.Equal(order, want) {
		t.Errorf("ran %v, want %v", order, want)
	}
}

func eventuallyTrue(cond func() bool) bool {
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return false
}

// TestDescribe: every server answers describe.Request with what it serves,
// as the generator described it.
func TestDescribe(t *testing.T) {
	l, _ := newLocal(t)
	var d describe.Server
	if err := l.Invoke(context.Background(), runtime.Request{Target: runtime.Target{Topic: "fleet", Server: "b"}, Method: describe.Request, Args: struct{}{}}, &d); err != nil {
		t.Fatal(err)
	}
	if d.Topic != "fleet" || d.Name != "b" || len(d.Services) != 1 || d.Services[0].Name != "Fleet" || d.Services[0].Version != "1.2" {
		t.Fatalf("description %+v", d)
	}
	byName := map[string]describe.Method{}
	for _, m := range d.Services[0].Methods {
		byName[m.Name] = m
	}
	for name, want := range map[string]string{
		"divide": "call since 1.0 gather=false params [{a int integer} {b int integer}] results [{q int integer} {r int integer}]",
		"record": "cast since 1.0 gather=false params [{v int integer}] results []",
		"reset":  "fanout since 1.0 gather=false params [] results []",
		"total":  "call since 1.0 gather=true params [] results [{r1 int integer}]",
		"newer":  "call since 1.2 gather=false params [] results [{r1 string string}]",
	} {
		m := byName[name]
		shapes := func(fields []describe.Field) string {
			var s []string
			for _, f := range fields {
				s = append(s, fmt.Sprintf("{%s %s %s}", f.Name, f.GoType, f.JSON))
			}
			return "[" + strings.Join(s, " ") + "]"
		}
		if got := fmt.Sprintf("%s since %s gather=%v params %s results %s", m.Mode, m.Since, m.Gather, shapes(m.Params), shapes(m.Results)); got != want {
			t.Errorf("%s: %s, want %s", name, got, want)
		}
	}
}
