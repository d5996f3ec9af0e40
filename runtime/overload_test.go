package runtime_test

import (
	"context"
	"errors"
	"github.com/amqprpc/amqprpc/internal/wire"
	"io"
	"log/slog"

	"sync"
	"testing"
	"time"

	"github.com/amqprpc/amqprpc/internal/testsvc"
	"github.com/amqprpc/amqprpc/runtime"
)

// TestQueueLimitRefusesAtOnce: on a topic whose queue holds at most one
// waiting request (WithQueueLimit) and whose server runs one at a time,
// calls and casts beyond what it can hold (a quorum queue takes a few
// more, as it applies its limit to what follows) fail at once with
// ErrOverloaded, which is ErrNacked too, whether calls share messages or
// not, while those it holds are served.
func TestQueueLimitRefusesAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []runtime.ClientOption
	}{
		{"batched", nil},
		{"not batched", []runtime.ClientOption{runtime.WithBatching(false)}},
		{"safe", []runtime.ClientOption{runtime.WithProfile(runtime.Safe)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, queueType := range []runtime.QueueType{runtime.QueueClassic, runtime.QueueQuorum} {
				topic := newTopic(t)
				serve(t, topic, runtime.WithPrefetch(1), runtime.WithQueueLimit(1), runtime.WithQueueType(queueType))
				arith := testsvc.NewArithClient(dial(t, tc.opts...), topic)
				fleet := testsvc.NewFleetClient(dial(t, tc.opts...), topic)
				if _, err := arith.Add(ctxTimeout(t, 5*time.Second), 1, 1); err != nil { // its reply says the server reads batches
					t.Fatal(err)
				}
				// Enough that the queue must refuse some: a quorum queue
				// applies its limit late, and a loaded machine lets a burst
				// of 8 calls, coalesced into a message or two, all in
				// (make test on CI saw 12 of 12 served).
				const n = 24
				var mu sync.Mutex
				var ok, refused int
				var slowest time.Duration
				var others []error
				var wg sync.WaitGroup
				for i := range n {
					if i == n/3 { // a quorum queue takes the first requests over its limit, then refuses
						time.Sleep(200 * time.Millisecond)
					}
					wg.Go(func() {
						start := time.Now()
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						defer cancel()
						var err error
						if i%3 == 2 {
							err = fleet.Note(ctx, i)
						} else {
							_, err = arith.Work(ctx, i, 300*time.Millisecond)
						}
						took := time.Since(start)
						mu.Lock()
						defer mu.Unlock()
						switch {
						case err == nil:
							ok++
						case errors.Is(err, runtime.ErrOverloaded) && errors.Is(err, runtime.ErrNacked):
							refused++
							slowest = max(slowest, took)
						default:
							others = append(others, err)
						}
					})
				}
				wg.Wait()
				t.Logf("%s queue: %d served, %d refused (slowest refusal %v)", queueType, ok, refused, slowest)
				if len(others) > 0 {
					t.Errorf("%s queue: %d requests failed otherwise: %v", queueType, len(others), others[0])
				}
				if refused == 0 || ok == 0 {
					t.Errorf("%s queue: %d served, %d refused; want some of each", queueType, ok, refused)
				}
				if slowest > 2*time.Second {
					t.Errorf("%s queue: a refused request took %v; want it refused at once", queueType, slowest)
				}
			}
		})
	}
}

// TestCloseWhileCallsGoToABoundedTopic: closing a client while its calls
// to a topic with a queue limit are being published and confirmed ends
// every call, without a panic or a race (TestMain checks that no goroutine
// is left behind).
func TestCloseWhileCallsGoToABoundedTopic(t *testing.T) {
	topic := newTopic(t)
	serve(t, topic, runtime.WithQueueLimit(1000))
	for range 5 {
		c, err := runtime.Dial(brokerURL(), runtime.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
		if err != nil {
			t.Fatal(err)
		}
		arith := testsvc.NewArithClient(c, topic)
		if _, err := arith.Add(ctxTimeout(t, 5*time.Second), 1, 1); err != nil { // its reply says the queue has a limit
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 32 {
			wg.Go(func() {
				for {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					_, err := arith.Add(ctx, 1, 2)
					cancel()
					if errors.Is(err, runtime.ErrClosed) || errors.Is(err, runtime.ErrConnectionLost) {
						return
					}
				}
			})
		}
		time.Sleep(100 * time.Millisecond)
		c.Close()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("calls still under way 10s after Close")
		}
	}
}

// TestBoundedCallsOutliveTheCastsChannel: calls to a topic with a queue
// limit go on the casts channel, in confirm mode; a broker error that
// closes that channel alone (here a fanout exchange declared with another
// type) costs them nothing: they go on a new one, and are answered.
func TestBoundedCallsOutliveTheCastsChannel(t *testing.T) {
	topic, clash := newTopic(t), newTopic(t)
	serve(t, topic, runtime.WithQueueLimit(1000))
	if err := rawChannel(t).ExchangeDeclare(wire.FanoutExchange(runtime.DefaultExchange, clash), "direct", false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	c := dial(t)
	arith, fleet := testsvc.NewArithClient(c, topic), testsvc.NewFleetClient(c, clash)
	if _, err := arith.Add(ctxTimeout(t, 5*time.Second), 1, 1); err != nil { // its reply says the queue has a limit
		t.Fatal(err)
	}
	var mu sync.Mutex
	var failed []error
	ok := 0
	var wg sync.WaitGroup
	end := time.Now().Add(time.Second)
	for range 16 {
		wg.Go(func() {
			for time.Now().Before(end) {
				_, err := arith.Add(ctxTimeout(t, 3*time.Second), 1, 2)
				mu.Lock()
				if err != nil {
					failed = append(failed, err)
				} else {
					ok++
				}
				mu.Unlock()
			}
		})
	}
	for time.Now().Before(end) {
		fleet.Reset(ctxTimeout(t, time.Second)) // a fanout: its exchange's declaration closes the casts channel
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	if len(failed) > 0 {
		t.Errorf("%d of %d calls failed while the casts channel closed under them: %v", len(failed), ok+len(failed), failed[0])
	}
}
