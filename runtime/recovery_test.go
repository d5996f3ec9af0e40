package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqprpc/amqprpc/internal/faultproxy"
	"github.com/amqprpc/amqprpc/internal/testsvc"
	"github.com/amqprpc/amqprpc/runtime"
)

// proxy starts a fault proxy to the broker and returns it with the broker
// URL through it.
func proxy(t *testing.T) (*faultproxy.Proxy, string) {
	t.Helper()
	u, err := url.Parse(brokerURL())
	if err != nil {
		t.Fatal(err)
	}
	host := u.Host
	if !strings.Contains(host, ":") {
		host += ":5672"
	}
	p, err := faultproxy.New(host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p, p.URL(brokerURL())
}

// fastReconnect makes reconnection quick enough for tests.
var fastReconnect = runtime.WithReconnectBackoff(20*time.Millisecond, 200*time.Millisecond)

func dialURL(t *testing.T, url string, opts ...runtime.ClientOption) *runtime.Client {
	t.Helper()
	c, err := runtime.Dial(url, append([]runtime.ClientOption{fastReconnect}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestPendingCallsFailAtOnceWhenTheConnectionIsLost(t *testing.T) {
	topic := newTopic(t)
	srv := serve(t, topic)
	p, url := proxy(t)
	c := dialURL(t, url)
	arith := testsvc.NewArithClient(c, topic)

	done := sleepInFlight(t, srv, arith, 2*time.Second)
	cut := time.Now()
	p.Cut()
	select {
	case err := <-done:
		if !errors.Is(err, runtime.ErrConnectionLost) {
			t.Fatalf("pending call after the cut: %v; want ErrConnectionLost", err)
		}
		t.Logf("pending call failed %v after the cut", time.Since(cut))
	case <-time.After(3 * time.Second):
		t.Fatal("a pending call still waits 3s after its connection was cut")
	}

	// The client reconnects by itself.
	eventually(t, "a call succeeds after the client reconnected", func() bool {
		sum, err := arith.Add(ctxTimeout(t, time.Second), 1, 2)
		return err == nil && sum == 3
	})
	if st := c.Stats(); st.Reconnects != 1 {
		t.Fatalf("client stats %+v; want 1 reconnect", st)
	}
}

func TestCallsWaitForTheBrokerUntilTheirDeadline(t *testing.T) {
	topic := newTopic(t)
	serve(t, topic)
	p, url := proxy(t)
	arith := testsvc.NewArithClient(dialURL(t, url), topic)

	p.Refuse(true)
	p.Cut()
	// A call made in the instant of the cut may have gone out on the lost
	// connection, and fails with ErrConnectionLost; once the client knows,
	// calls wait for the broker until their deadline.
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		start := time.Now()
		_, err := arith.Add(ctx, 1, 2)
		cancel()
		if elapsed := time.Since(start); elapsed > 2*time.Second {
			t.Fatalf("call while the broker is away ended after %v, long after its deadline", elapsed)
		}
		if errors.Is(err, runtime.ErrReconnecting) && errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if !errors.Is(err, runtime.ErrConnectionLost) || attempt == 5 {
			t.Fatalf("call while the broker is away: %v; want ErrReconnecting and the deadline", err)
		}
	}

	// A call made while the broker is away succeeds once it is back.
	result := make(chan error, 1)
	go func() {
		sum, err := arith.Add(ctxTimeout(t, 10*time.Second), 2, 2)
		if err == nil && sum != 4 {
			err = errors.New("wrong sum")
		}
		result <- err
	}()
	time.Sleep(300 * time.Millisecond)
	p.Refuse(false)
	if err := <-result; err != nil {
		t.Fatalf("call made while the broker was away: %v; want it to wait and succeed", err)
	}
}

func TestSeveralBrokerURLs(t *testing.T) {
	topic := newTopic(t)
	serve(t, topic)
	p, url := proxy(t)
	p.Refuse(true)
	// The first URL refuses; the client uses the second.
	c := dialURL(t, url, runtime.WithURLs(brokerURL()))
	if sum, err := testsvc.NewArithClient(c, topic).Add(ctxTimeout(t, 5*time.Second), 1, 1); err != nil || sum != 2 {
		t.Fatalf("Add through the second URL = %d, %v", sum, err)
	}
	if _, err := runtime.Dial(url); err == nil || !strings.Contains(err.Error(), "127.0.0.1") {
		t.Fatalf("Dial to a refusing broker: %v; want an error naming it", err)
	}
}

// TestServerReconnects cuts a server's connection while it runs a
// request: the request goes back to the queue and is served again after
// the server reconnects; with deduplication, it is not run twice.
func TestServerReconnects(t *testing.T) {
	for _, tc := range []struct {
		name      string
		dedupe    bool
		wantRuns  int
		wantReply bool
	}{{"without deduplication", false, 2, true}, {"with deduplication", true, 1, true}} {
		t.Run(tc.name, func(t *testing.T) {
			topic := newTopic(t)
			p, url := proxy(t)
			opts := []runtime.ServerOption{fastReconnect}
			if tc.dedupe {
				opts = append(opts, runtime.WithDeduplication(100))
			}
			srv := serveVia(t, url, topic, "main", opts...)
			arith := testsvc.NewArithClient(dial(t), topic)

			result := make(chan error, 1)
			go func() {
				id, err := arith.Work(ctxTimeout(t, 20*time.Second), 7, 500*time.Millisecond)
				if err == nil && id != 7 {
					err = errors.New("wrong id")
				}
				result <- err
			}()
			eventually(t, "Work is running", func() bool { return srv.arith.Calls.Load() > 0 })
			p.Cut() // the server's connection: its reply and ack cannot go out

			select {
			case err := <-result:
				if err != nil {
					t.Fatalf("Work across the server's reconnection: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("no reply 15s after the server's connection was cut")
			}
			eventually(t, "the executions settle", func() bool { return srv.arith.Executions(7) >= tc.wantRuns })
			time.Sleep(200 * time.Millisecond)
			if got := srv.arith.Executions(7); got != tc.wantRuns {
				t.Fatalf("Work(7) ran %d times; want %d", got, tc.wantRuns)
			}
			// The request in flight at the cut came back marked redelivered.
			if st := srv.Stats(); st.Reconnects != 1 || st.Redelivered != 1 {
				t.Fatalf("server stats %+v; want 1 reconnect, 1 redelivery", st)
			}
		})
	}
}

func TestDeadlineReachesTheMethod(t *testing.T) {
	topic := newTopic(t)
	srv := serve(t, topic)
	arith := testsvc.NewArithClient(dial(t), topic)

	deadline := time.Now().Add(7 * time.Second)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	at, set, err := arith.Deadline(ctx)
	if err != nil || !set {
		t.Fatalf("Deadline() = %v, %v, %v; want the caller's deadline", at, set, err)
	}
	if d := at.Sub(deadline); d < -time.Millisecond || d > time.Millisecond {
		t.Fatalf("the method's deadline is %v; the caller's is %v", at, deadline)
	}

	// A request taken after its deadline is dropped without running.
	ch := rawChannel(t)
	queue, replies := replyQueue(t, ch)
	calls := srv.arith.Calls.Load()
	publish(t, ch, topic, amqp.Publishing{
		CorrelationId: "late",
		ReplyTo:       queue,
		Headers:       amqp.Table{"amqprpc-deadline": time.Now().Add(-time.Second).UnixMilli()},
		Body:          []byte(`{"method": "add", "args": {"v1": 1, "v2": 2}}`),
	})
	select {
	case d := <-replies:
		t.Fatalf("a request past its deadline was answered: %s", d.Body)
	case <-time.After(500 * time.Millisecond):
	}
	if got := srv.arith.Calls.Load(); got != calls {
		t.Fatalf("a request past its deadline ran")
	}
	if sum, err := arith.Add(ctxTimeout(t, 5*time.Second), 1, 2); err != nil || sum != 3 {
		t.Fatalf("Add after a late request = %d, %v", sum, err)
	}
}

func TestBodyLimits(t *testing.T) {
	topic := newTopic(t)
	serve(t, topic, runtime.WithMaxBodySize(1024))
	ch := rawChannel(t)
	queue, replies := replyQueue(t, ch)

	big := `{"method": "echo", "args": {"p": {"name": "` + strings.Repeat("x", 2000) + `"}}}`
	publish(t, ch, topic, amqp.Publishing{CorrelationId: "big", ReplyTo: queue, Body: []byte(big)})
	d := receive(t, replies)
	var reply struct{ Failure *runtime.Error }
	if err := json.Unmarshal(d.Body, &reply); err != nil || reply.Failure == nil || reply.Failure.Code != runtime.CodeResourceExhausted {
		t.Fatalf("reply to a 2 KB request with a 1 KB limit = %s; want code %s", d.Body, runtime.CodeResourceExhausted)
	}

	arith := testsvc.NewArithClient(dial(t, runtime.WithMaxBodySize(100)), topic)
	_, err := arith.Echo(ctxTimeout(t, 5*time.Second), testsvc.Payload{Name: strings.Repeat("y", 200)})
	if !errors.Is(err, runtime.ErrTooLarge) {
		t.Fatalf("a request over the client's limit: %v; want ErrTooLarge", err)
	}
}

func TestMaxInFlight(t *testing.T) {
	topic := newTopic(t)
	srv := serve(t, topic)
	arith := testsvc.NewArithClient(dial(t, runtime.WithMaxInFlight(2)), topic)

	a := sleepInFlight(t, srv, arith, time.Second)
	b := sleepInFlight(t, srv, arith, time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := arith.Add(ctx, 1, 1); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "in-flight") {
		t.Fatalf("a third call with two in flight and a bound of 2: %v; want it to wait for a slot until its deadline", err)
	}
	if err := errors.Join(<-a, <-b); err != nil {
		t.Fatal(err)
	}
	if sum, err := arith.Add(ctxTimeout(t, 5*time.Second), 1, 1); err != nil || sum != 2 {
		t.Fatalf("a call once the slots are free = %d, %v", sum, err)
	}
}

// TestSafeCallsBatched: with request confirms (the Safe profile), calls in
// flight together share messages, as they do without, and the broker
// confirms them together; each is answered.
func TestSafeCallsBatched(t *testing.T) {
	topic := newTopic(t)
	serve(t, topic)
	c := dial(t, runtime.WithProfile(runtime.Safe))
	arith := testsvc.NewArithClient(c, topic)
	if _, err := arith.Add(ctxTimeout(t, 5*time.Second), 1, 1); err != nil { // its reply says the server reads batches
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			if sum, err := arith.Add(ctxTimeout(t, 10*time.Second), i, 1); err != nil || sum != i+1 {
				t.Errorf("Add(%d, 1) = %d, %v", i, sum, err)
			}
		})
	}
	wg.Wait()
	if st := c.Stats(); st.Batches == 0 {
		t.Fatalf("client stats %+v: 200 Safe calls at once went one to a message", st)
	}
}

func TestNackedRequests(t *testing.T) {
	topic := newTopic(t)
	ch := rawChannel(t)
	// A queue that refuses every message: the broker nacks what it routes there.
	args := amqp.Table{"x-max-length": int32(0), "x-overflow": "reject-publish"}
	if _, err := ch.QueueDeclare(topic, false, false, false, false, args); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(topic, topic, runtime.DefaultExchange, false, nil); err != nil {
		t.Fatal(err)
	}
	// Casts are always confirmed, and calls with the Safe profile.
	client := testsvc.NewFleetClient(dial(t, runtime.WithProfile(runtime.Safe)), topic)
	if err := client.Record(ctxTimeout(t, 5*time.Second), 1); !errors.Is(err, runtime.ErrNacked) {
		t.Fatalf("cast to a queue that rejects it: %v; want ErrNacked", err)
	}
	if _, err := client.Name(ctxTimeout(t, 5*time.Second)); !errors.Is(err, runtime.ErrNacked) {
		t.Fatalf("Safe call to a queue that rejects it: %v; want ErrNacked", err)
	}
	// A Fast call goes in confirm mode only to a topic whose replies said
	// its queue has a limit (WithQueueLimit); no reply came from this one,
	// so the call ends at its deadline.
	fast := testsvc.NewFleetClient(dial(t, runtime.WithProfile(runtime.Fast)), topic)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := fast.Name(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Fast call to a queue that rejects it: %v; want its deadline", err)
	}
}
