package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amqprpc/amqprpc/internal/testsvc"
	"github.com/amqprpc/amqprpc/runtime"
)

func TestRoundTrip(t *testing.T) {
	topic := newTopic(t)
	serve(t, topic)
	arith := testsvc.NewArithClient(dial(t), topic)
	ctx := ctxTimeout(t, 10*time.Second)

	sum, err := arith.Add(ctx, 2, 3)
	if err != nil || sum != 5 {
		t.Fatalf("Add(2, 3) = %d, %v; want 5, nil", sum, err)
	}
	q, err := arith.Div(ctx, 7, 2)
	if err != nil || q != 3 {
		t.Fatalf("Div(7, 2) = %d, %v; want 3, nil", q, err)
	}
	total, err := arith.Sum(ctx, 1, 2, 3, 4)
	if err != nil || total != 10 {
		t.Fatalf("Sum(1, 2, 3, 4) = %d, %v; want 10, nil", total, err)
	}
	if total, err := arith.Sum(ctx); err != nil || total != 0 {
		t.Fatalf("Sum() = %d, %v; want 0, nil", total, err)
	}

	in := testsvc.Payload{
		Name:    "root",
		Tags:    []string{"a", "b"},
		Attrs:   map[string]int{"x": 1},
		Next:    &testsvc.Payload{Name: "leaf", Labels: map[string]string{"k": "v"}},
		When:    time.Date(2026, 11, 25, 7, 0, 0, 123, time.UTC),
		Skipped: "not sent",
	}
	out, err := arith.Echo(ctx, in)
	want := in
	want.Skipped = ""
	if err != nil || !reflect.DeepEqual(out, want) {
		t.Fatalf("Echo(%+v) = %+v, %v; want %+v", in, out, err, want)
	}
}

func TestClientImplementsContextFirstInterface(t *testing.T) {
	topic := newTopic(t)
	serve(t, topic)
	var store testsvc.Store = testsvc.NewStoreClient(dial(t), topic)
	ctx := ctxTimeout(t, 10*time.Second)
	if err := store.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	if v, err := store.Get(ctx, "k"); err != nil || v != "v" {
		t.Fatalf("Get(k) = %q, %v; want v, nil", v, err)
	}
}

func TestConcurrentCalls(t *testing.T) {
	topic := newTopic(t)
	srv := serve(t, topic)
	arith := testsvc.NewArithClient(dial(t), topic)
	ctx := ctxTimeout(t, 60*time.Second)

	const n = 1000
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			sum, err := arith.Add(ctx, i, 2*i)
			if err == nil && sum != 3*i {
				err = fmt.Errorf("Add(%d, %d) = %d", i, 2*i, sum)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if err != nil {
			if failed++; failed <= 5 {
				t.Error(err)
			}
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d concurrent calls failed", failed, n)
	}
	if got := srv.arith.Calls.Load(); got != n {
		t.Errorf("server handled %d calls, want %d", got, n)
	}
}

// TestRemoteErrors runs in memory (Local): the same dispatch and encoding
// as over a broker, which TestRoundTrip covers.
func TestRemoteErrors(t *testing.T) {
	topic := "arith"
	logs := new(syncBuffer)
	c := runtime.NewLocal(topic, runtime.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	t.Cleanup(func() { c.Close() })
	testsvc.RegisterArithServer(c, new(testsvc.ArithImpl))
	arith := testsvc.NewArithClient(c, topic)
	ctx := ctxTimeout(t, 10*time.Second)

	t.Run("handler error", func(t *testing.T) {
		_, err := arith.Div(ctx, 1, 0)
		rerr, ok := errors.AsType[*runtime.Error](err)
		if !ok || rerr.Code != runtime.CodeUnknown || rerr.Message != testsvc.ErrDivideByZero.Error() {
			t.Fatalf("Div(1, 0) error = %v; want a *runtime.Error with code %q and message %q", err, runtime.CodeUnknown, testsvc.ErrDivideByZero)
		}
	})
	t.Run("unknown method", func(t *testing.T) {
		err := invoke(ctx, c, topic, "sub", map[string]int{"v1": 1}, nil)
		if remoteCode(err) != runtime.CodeUnimplemented {
			t.Fatalf("calling sub: %v; want code %q", err, runtime.CodeUnimplemented)
		}
	})
	t.Run("argument of the wrong type", func(t *testing.T) {
		var out int
		err := invoke(ctx, c, topic, "add", map[string]any{"v1": "two", "v2": 3}, &out)
		if remoteCode(err) != runtime.CodeInvalidArgument {
			t.Fatalf("add(v1: \"two\"): %v; want code %q", err, runtime.CodeInvalidArgument)
		}
	})
	t.Run("misspelt argument", func(t *testing.T) {
		var out int
		err := invoke(ctx, c, topic, "add", map[string]any{"v1": 1, "v3": 3}, &out)
		if remoteCode(err) != runtime.CodeInvalidArgument {
			t.Fatalf("add(v3: 3): %v; want code %q", err, runtime.CodeInvalidArgument)
		}
	})
	t.Run("panic", func(t *testing.T) {
		err := arith.Crash(ctx)
		if remoteCode(err) != runtime.CodeInternal {
			t.Fatalf("Crash: %v; want code %q", err, runtime.CodeInternal)
		}
		if sum, err := arith.Add(ctx, 1, 1); err != nil || sum != 2 {
			t.Fatalf("after a panic, Add(1, 1) = %d, %v; want 2, nil", sum, err)
		}
		if logs := logs.String(); !strings.Contains(logs, "method panicked") {
			t.Errorf("no log line for the panic; logs:\n%s", logs)
		}
	})
}

func TestNoServerFailsFast(t *testing.T) {
	topic := newTopic(t) // nothing serves it, so no queue is bound
	arith := testsvc.NewArithClient(dial(t, runtime.WithTimeout(30*time.Second)), topic)
	start := time.Now()
	_, err := arith.Add(context.Background(), 1, 2)
	if !errors.Is(err, runtime.ErrNoServer) {
		t.Fatalf("Add with no server: %v; want ErrNoServer", err)
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Fatalf("ErrNoServer after %v; it must come from the broker's return, not the 30s timeout", elapsed)
	}
}

// TestNoServerFailsFastInBatches makes many calls at once with no server,
// so that some go out together: every one fails fast with ErrNoServer.
func TestNoServerFailsFastInBatches(t *testing.T) {
	topic := newTopic(t)
	srv := serve(t, topic)
	arith := testsvc.NewArithClient(dial(t, runtime.WithTimeout(30*time.Second)), topic)
	// A server answers once, which opens the topic to batches of calls,
	// and goes, with its queue.
	if _, err := arith.Add(ctxTimeout(t, 5*time.Second), 1, 2); err != nil {
		t.Fatal(err)
	}
	srv.Shutdown(ctxTimeout(t, 5*time.Second))
	if _, err := rawChannel(t).QueueDelete(topic, false, false, false); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for range 200 {
		wg.Go(func() {
			if _, err := arith.Add(context.Background(), 1, 2); !errors.Is(err, runtime.ErrNoServer) {
				t.Errorf("Add with no server: %v; want ErrNoServer", err)
			}
		})
	}
	wg.Wait()
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Fatalf("ErrNoServer after %v; it must come from the broker's returns, not the 30s timeout", elapsed)
	}
}

// TestWithoutBatching makes many calls at once with batching off: each
// request is a message of its own that does not accept batched replies.
func TestWithoutBatching(t *testing.T) {
	topic := newTopic(t)
	ch := rawChannel(t)
	requests := standIn(t, ch, topic)
	arith := testsvc.NewArithClient(dial(t, runtime.WithBatching(false)), topic)
	ctx := ctxTimeout(t, 10*time.Second)
	const n = 100
	for range n {
		go arith.Add(ctx, 1, 2)
	}
	for range n {
		select {
		case d := <-requests:
			if d.Type != "" || strings.Contains(string(d.Body), "batch_replies") || d.CorrelationId == "" {
				t.Fatalf("request of type %q, correlation_id %q: %s; want one call alone", d.Type, d.CorrelationId, d.Body)
			}
		case <-ctx.Done():
			t.Fatal("fewer requests than calls")
		}
	}
}

func TestSlowServerEndsAtDeadline(t *testing.T) {
	topic := newTopic(t)
	serve(t, topic)
	arith := testsvc.NewArithClient(dial(t), topic)

	const deadline = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	err := arith.Sleep(ctx, 2*time.Second)
	elapsed := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Sleep past the deadline: %v; want context.DeadlineExceeded", err)
	}
	if elapsed > deadline+2*time.Second {
		t.Fatalf("call ended %v after its start, long after its %v deadline", elapsed, deadline)
	}

	// The client's default timeout applies when the context has none.
	short := testsvc.NewArithClient(dial(t, runtime.WithTimeout(deadline)), topic)
	if err := short.Sleep(context.Background(), 2*time.Second); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Sleep past WithTimeout: %v; want context.DeadlineExceeded", err)
	}
}

func TestCloseFailsPendingCalls(t *testing.T) {
	topic := newTopic(t)
	srv := serve(t, topic)
	c := dial(t)
	arith := testsvc.NewArithClient(c, topic)

	done := sleepInFlight(t, srv, arith, 2*time.Second)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, runtime.ErrClosed) {
		t.Fatalf("pending call after Close: %v; want ErrClosed", err)
	}
	if _, err := arith.Add(context.Background(), 1, 1); !errors.Is(err, runtime.ErrClosed) {
		t.Fatalf("call after Close: %v; want ErrClosed", err)
	}
}

func TestShutdownWaitsForInFlightHandlers(t *testing.T) {
	topic := newTopic(t)
	srv := serve(t, topic)
	arith := testsvc.NewArithClient(dial(t), topic)

	done := sleepInFlight(t, srv, arith, 500*time.Millisecond)
	if err := srv.Shutdown(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("call in flight during Shutdown: %v; want its reply", err)
	}
	if err := <-srv.err; !errors.Is(err, runtime.ErrServerClosed) {
		t.Fatalf("Serve after Shutdown returned %v; want ErrServerClosed", err)
	}
}

func TestDialErrorsHideThePassword(t *testing.T) {
	_, err := runtime.Dial("amqp://guest:s3cret@127.0.0.1:1/")
	if err == nil {
		t.Fatal("Dial to a closed port succeeded")
	}
	if strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "guest:xxxxx@127.0.0.1:1") {
		t.Fatalf("Dial error %q; want the URL with its password redacted", err)
	}
}

func TestShutdownGivesUpAtItsDeadline(t *testing.T) {
	topic := newTopic(t)
	srv := serve(t, topic)
	arith := testsvc.NewArithClient(dial(t), topic)

	done := sleepInFlight(t, srv, arith, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with a handler still running = %v; want context.DeadlineExceeded", err)
	}
	if err := <-srv.err; !errors.Is(err, runtime.ErrServerClosed) {
		t.Fatalf("Serve = %v; want ErrServerClosed", err)
	}
	// The request was never acknowledged, so the broker has it back for
	// another server.
	ch := rawChannel(t)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		q, err := ch.QueueDeclarePassive(topic, false, false, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		if q.Messages == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d requests in the queue after a forced shutdown; want the one in flight back", q.Messages)
		}
	}
	select {
	case err := <-done:
		t.Fatalf("the call ended (%v) while its request waits in the queue", err)
	default:
	}
}

// sleepInFlight calls Sleep(d) and returns once the server runs it; the
// channel gets the call's result.
func sleepInFlight(t *testing.T, srv *testServer, arith *testsvc.ArithClient, d time.Duration) <-chan error {
	t.Helper()
	before := srv.arith.Calls.Load()
	done := make(chan error, 1)
	go func() { done <- arith.Sleep(ctxTimeout(t, 30*time.Second), d) }()
	for srv.arith.Calls.Load() == before {
		time.Sleep(5 * time.Millisecond)
	}
	return done
}

func TestServerRunsRequestsConcurrently(t *testing.T) {
	topic := newTopic(t)
	serve(t, topic, runtime.WithPrefetch(8))
	arith := testsvc.NewArithClient(dial(t), topic)

	const n, d = 8, 300 * time.Millisecond
	start := time.Now()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if err := arith.Sleep(ctxTimeout(t, 10*time.Second), d); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if elapsed := time.Since(start); elapsed > 3*d {
		t.Fatalf("%d calls of %v took %v with a prefetch of %d; they must run at once", n, d, elapsed, n)
	}
}
