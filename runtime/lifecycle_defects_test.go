package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqprpc/amqprpc/describe"
	"github.com/amqprpc/amqprpc/internal/testsvc"
	"github.com/amqprpc/amqprpc/runtime"
)

// Regression tests for defects of the lifecycle of connections, consumers,
// calls and replies that a review found. Each states the behaviour the
// fix gives; each failed before it.

// TestLifecycleConsumerCancelledByBroker: when the broker cancels a
// server's consumer (here, because its queue was deleted), the server
// declares its queue again and consumes it, and logs that its consumer
// was cancelled, rather than stop serving the topic for good.
func TestLifecycleConsumerCancelledByBroker(t *testing.T) {
	topic := newTopic(t)
	ts := serve(t, topic)
	arith := testsvc.NewArithClient(dial(t), topic)
	if sum, err := arith.Add(ctxTimeout(t, 5*time.Second), 2, 3); err != nil || sum != 5 {
		t.Fatalf("Add(2, 3) before the queue was deleted = %d, %v", sum, err)
	}
	logged := len(ts.logs.String())

	if _, err := rawChannel(t).QueueDelete(topic,
		false, // ifUnused
		false, // ifEmpty
		false, // noWait
	); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, 10*time.Second, "a call succeeds after the broker cancelled the server's consumer", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		sum, err := arith.Add(ctx, 2, 3)
		if err == nil && sum != 5 {
			err = fmt.Errorf("Add(2, 3) = %d", sum)
		}
		return err
	})
	if logs := ts.logs.String()[logged:]; !strings.Contains(strings.ToLower(logs), "cancel") {
		t.Errorf("no log line says the consumer was cancelled; logs since the queue was deleted:\n%s", logs)
	}
}

// TestLifecycleOsloClientWithoutCallMonitor: an oslo.messaging client
// with no CallMonitorTimeout takes a reply of several messages as
// oslo.messaging's own client does: a heartbeat (ending: false, no
// result) is skipped, and the reply of servers older than 2015 (the
// result without "ending", then an empty message with ending: true) gives
// the result of the first message.
func TestLifecycleOsloClientWithoutCallMonitor(t *testing.T) {
	for _, tc := range []struct {
		name    string
		replies []string // each with %q for the _msg_id
		want    int
	}{
		{"a heartbeat then the reply", []string{
			`{"result": null, "failure": null, "ending": false, "_msg_id": %q}`,
			`{"result": 5, "failure": null, "ending": true, "_msg_id": %q}`,
		}, 5},
		{"the reply in two messages, as before 2015", []string{
			`{"result": 7, "failure": null, "_msg_id": %q}`,
			`{"result": null, "failure": null, "ending": true, "_msg_id": %q}`,
		}, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topic := newTopic(t)
			cfg := runtime.OsloConfig{ControlExchange: osloExchange(t)}
			osloPeer(t, cfg, topic, func(msgID string) []string {
				out := make([]string, len(tc.replies))
				for i, r := range tc.replies {
					out[i] = fmt.Sprintf(r, msgID)
				}
				return out
			})
			c := dial(t, runtime.WithOslo(cfg))
			var result int
			err := c.Invoke(ctxTimeout(t, 10*time.Second), runtime.Request{Target: runtime.Target{Topic: topic}, Method: "add", Args: map[string]int{"v1": 2, "v2": 3}}, &result)
			if err != nil || result != tc.want {
				t.Fatalf("call = %d, %v; want %d, nil", result, err, tc.want)
			}
		})
	}
}

// TestLifecycleOsloRedeliveryIsAnswered: an oslo.messaging server that
// acknowledges after replying (WithAckAfterReply(true) after WithOslo)
// serves and answers a request delivered again after it lost its
// connection with the request in flight: the first delivery's _unique_id
// does not make the second a duplicate.
func TestLifecycleOsloRedeliveryIsAnswered(t *testing.T) {
	topic := newTopic(t)
	cfg := runtime.OsloConfig{ControlExchange: osloExchange(t), DurableQueues: true}
	t.Cleanup(func() { deleteQueues(topic + ".main") }) // durable, and not the topic's
	p, url := proxy(t)
	c := dial(t, runtime.WithOslo(cfg)) // not through the proxy
	ts := serveOslo(t, url, topic, c, runtime.WithOslo(cfg), runtime.WithAckAfterReply(true), fastReconnect)
	arith := testsvc.NewArithClient(c, topic)

	const id = 42
	done := inFlight(t, ts, func() error {
		n, err := arith.Work(ctxTimeout(t, 10*time.Second), id, 500*time.Millisecond)
		if err == nil && n != id {
			err = fmt.Errorf("Work(%d) = %d", id, n)
		}
		return err
	})
	p.Cut() // the request goes back to the queue, for the server once reconnected
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("a call whose request was in flight when the server lost its connection: %v; want it served again and answered\nserver logs:\n%s", err, ts.logs)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the call did not end within 15s")
	}
	t.Logf("Work(%d) completed %d times (at least once: once cut short, once again)", id, ts.arith.Executions(id))
}

// TestLifecycleOverlongStrings: a string that does not fit an AMQP short
// string (255 bytes) fails the one call that carries it, at once and
// saying why, rather than tear down the client's connection under its
// other calls. A server drops such a key from the metadata of a batched
// request and still answers every request of the batch.
func TestLifecycleOverlongStrings(t *testing.T) {
	topic := newTopic(t)
	ts := serve(t, topic)
	c := dial(t)
	arith := testsvc.NewArithClient(c, topic)
	if sum, err := arith.Add(ctxTimeout(t, 5*time.Second), 2, 3); err != nil || sum != 5 {
		t.Fatalf("Add(2, 3) = %d, %v", sum, err)
	}
	add := func(ctx context.Context, target runtime.Target) error {
		var sum int
		return c.Invoke(ctx, runtime.Request{Target: target, Method: "add", Args: map[string]int{"v1": 2, "v2": 3}}, &sum)
	}
	for _, tc := range []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"a server name of 300 bytes", func(ctx context.Context) error {
			return add(ctx, runtime.Target{Topic: topic, Server: strings.Repeat("s", 300)})
		}},
		{"a topic of 300 bytes", func(ctx context.Context) error {
			return add(ctx, runtime.Target{Topic: strings.Repeat("t", 300)})
		}},
		{"a metadata key of 300 bytes", func(ctx context.Context) error {
			return add(runtime.WithMetadata(ctx, runtime.Metadata{strings.Repeat("k", 300): "v"}), runtime.Target{Topic: topic})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			slow := inFlight(t, ts, func() error { return arith.Sleep(ctxTimeout(t, 10*time.Second), 500*time.Millisecond) })
			const deadline = 10 * time.Second
			start := time.Now()
			err := tc.call(ctxTimeout(t, deadline))
			took := time.Since(start)
			t.Logf("the call ended after %v with %.200v", took, err)
			switch {
			case err == nil:
				t.Errorf("the call succeeded; want an error")
			case errors.Is(err, runtime.ErrConnectionLost), !strings.Contains(err.Error(), "255"):
				t.Errorf("the call failed with %.300v; want an error that mentions the limit of 255 bytes, not ErrConnectionLost", err)
			case took > 2*time.Second:
				t.Errorf("the call failed after %v (deadline %v): %.300v; want it to fail at once", took, deadline, err)
			}
			select {
			case err := <-slow:
				if err != nil {
					t.Errorf("a call in flight on the same client meanwhile: %v; want it to succeed", err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("a call in flight on the same client did not end within 15s")
			}
			if sum, err := arith.Add(ctxTimeout(t, 5*time.Second), 2, 3); err != nil || sum != 5 {
				t.Errorf("Add(2, 3) after it = %d, %v", sum, err)
			}
		})
	}

	t.Run("a batched request's header key of 300 bytes", func(t *testing.T) {
		topic := newTopic(t)
		long := strings.Repeat("k", 300)
		var mu sync.Mutex
		seen := make(map[string][]string) // request id: the metadata keys its method saw
		record := func(ctx context.Context, info *runtime.ServerInfo, next runtime.Handler) (any, error) {
			mu.Lock()
			for k := range runtime.IncomingMetadata(ctx) {
				seen[info.ID] = append(seen[info.ID], k)
			}
			mu.Unlock()
			return next(ctx)
		}
		serve(t, topic, runtime.WithServerInterceptors(record))
		ch := rawChannel(t)
		queue, replies := replyQueue(t, ch)
		publish(t, ch, topic, amqp.Publishing{Type: "amqprpc.requests", ContentType: "application/json", ReplyTo: queue, Body: fmt.Appendf(nil, `[
			{"id": "b1", "deadline": 0, "headers": {"traceparent": "t1"}, "request": {"method": "add", "args": {"v1": 1, "v2": 1}}},
			{"id": "b2", "deadline": 0, "headers": {%q: "v", "tenant": "a"}, "request": {"method": "add", "args": {"v1": 2, "v2": 2}}},
			{"id": "b3", "deadline": 0, "request": {"method": "add", "args": {"v1": 3, "v2": 3}}}
		]`, long)})
		want := map[string]string{"b1": `{"result":2}`, "b2": `{"result":4}`, "b3": `{"result":6}`}
		got := make(map[string]string)
		for len(got) < len(want) {
			select {
			case d := <-replies:
				got[d.CorrelationId] = string(d.Body)
			case <-time.After(10 * time.Second):
				t.Fatalf("after 10s, replies %v; want %v", got, want)
			}
		}
		for id, w := range want {
			if got[id] != w {
				t.Errorf("reply to %s = %s; want %s", id, got[id], w)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		for id, keys := range seen {
			for _, k := range keys {
				if len(k) > 255 {
					t.Errorf("the method of %s saw a metadata key of %d bytes; want keys over 255 bytes dropped where they enter", id, len(k))
				}
			}
		}
	})
}

// TestLifecycleMixedFleet: a client that batches calls to a topic, once
// an amqprpc server of it said it reads batches, still gets every call
// answered when the topic also has a server that implements the protocol
// without batches, exactly as docs/PROTOCOL.md tells one to.
func TestLifecycleMixedFleet(t *testing.T) {
	topic := newTopic(t)
	serve(t, topic)
	took := plainServer(t, topic)
	c := dial(t)
	arith := testsvc.NewArithClient(c, topic)

	const callers, calls = 64, 20
	var failed atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for g := range callers {
		wg.Go(func() {
			for i := range calls {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				sum, err := arith.Add(ctx, g, i)
				cancel()
				if err == nil && sum != g+i {
					err = fmt.Errorf("Add(%d, %d) = %d", g, i, sum)
				}
				if err != nil { // the rest of this caller's calls would fail alike
					failed.Add(1)
					once.Do(func() { firstErr = err })
					return
				}
			}
		})
	}
	wg.Wait()
	st := c.Stats()
	t.Logf("the plain server took %d messages; the client sent %d batches of %d calls", took.Load(), st.Batches, st.BatchedCalls)
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d callers had a call fail; the first: %v", n, callers, firstErr)
	}
	if took.Load() == 0 {
		t.Errorf("the plain server took no request: the test did not test a mixed fleet")
	}
}

// TestLifecycleClassicRepliesDoNotRerunOthers: a classic reply that cannot
// go out (its msg_id exchange is gone with its caller) costs no other
// classic reply: every live caller gets its one reply, and every request
// runs once.
func TestLifecycleClassicRepliesDoNotRerunOthers(t *testing.T) {
	topic := newTopic(t)
	ts := serve(t, topic)
	ch := rawChannel(t)
	// One queue for the replies of every live caller, bound to each one's
	// exchange.
	q, err := ch.QueueDeclare("",
		false, // durable
		true,  // autoDelete
		true,  // exclusive
		false, // noWait
		nil)
	if err != nil {
		t.Fatal(err)
	}
	replies, err := ch.Consume(q.Name, "",
		true,  // autoAck
		true,  // exclusive
		false, // noLocal
		false, // noWait
		nil)
	if err != nil {
		t.Fatal(err)
	}

	const n, work = 48, 300 * time.Millisecond // all at once, within the prefetch count: their replies overlap
	run := uuid.NewString()[:8]
	msgID := func(i int) string { return fmt.Sprintf("lifecycle-classic-%s-%d", run, i) }
	live := func(i int) bool { return i%3 != 2 } // every third caller is gone: its exchange does not exist
	for i := range n {
		if !live(i) {
			continue
		}
		if err := ch.ExchangeDeclare(msgID(i), "direct",
			false, // durable
			true,  // autoDelete
			false, // internal
			false, // noWait
			nil); err != nil {
			t.Fatal(err)
		}
		if err := ch.QueueBind(q.Name, msgID(i), msgID(i), false, nil); err != nil { // noWait
			t.Fatal(err)
		}
	}
	for i := range n {
		publish(t, ch, topic, amqp.Publishing{ContentType: "application/json",
			Body: fmt.Appendf(nil, `{"method": "work", "args": {"id": %d, "d": %d}, "msg_id": %q}`, i, work, msgID(i))})
	}

	got := make(map[string][]string) // msg_id: the replies
	wantReplies := n - n/3
	collect := func(d amqp.Delivery) { got[d.CorrelationId] = append(got[d.CorrelationId], string(d.Body)) }
	for deadline := time.After(20 * time.Second); len(got) < wantReplies; {
		select {
		case d := <-replies:
			collect(d)
		case <-deadline:
			t.Fatalf("after 20s, replies to %d of %d live callers", len(got), wantReplies)
		}
	}
	pollUntil(t, 10*time.Second, "every request ran", func() error {
		for i := range n {
			if ts.arith.Executions(i) == 0 {
				return fmt.Errorf("work %d has not run", i)
			}
		}
		return nil
	})
	// Shutdown waits for the runs under way; a request put back on the
	// queue stays there.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if q, err := rawChannel(t).QueueDeclarePassive(topic, true, false, false, false, nil); err != nil || q.Messages != 0 {
		t.Errorf("%d requests back on the queue after the server shut down (%v); want none", q.Messages, err)
	}
	drain := time.After(300 * time.Millisecond) // a second reply would be out by now
	for draining := true; draining; {
		select {
		case d := <-replies:
			collect(d)
		case <-drain:
			draining = false
		}
	}

	var reran, answered []string // "work id: runs", "work id: replies"
	for i := range n {
		if runs := ts.arith.Executions(i); runs != 1 {
			reran = append(reran, fmt.Sprintf("%d (caller %s): %d", i, map[bool]string{true: "live", false: "gone"}[live(i)], runs))
		}
		if !live(i) {
			continue
		}
		if want := fmt.Sprintf(`{"result":%d}`, i); len(got[msgID(i)]) != 1 || got[msgID(i)][0] != want {
			answered = append(answered, fmt.Sprintf("%d: %v", i, got[msgID(i)]))
		}
	}
	if len(reran) > 0 {
		t.Errorf("%d of %d requests did not run exactly once (%d method runs in all); work id (caller): runs:\n%s", len(reran), n, ts.arith.Calls.Load(), strings.Join(reran, "\n"))
	}
	if len(answered) > 0 {
		t.Errorf("%d of %d live callers did not get exactly one reply, the right one; work id: replies:\n%s", len(answered), wantReplies, strings.Join(answered, "\n"))
	}
}

// TestLifecycleDescribeGoesThroughInterceptors: a server's interceptors
// wrap describe.Request as any other request, so that one that refuses a
// caller hides what the server serves too.
func TestLifecycleDescribeGoesThroughInterceptors(t *testing.T) {
	topic := newTopic(t)
	deny := func(ctx context.Context, info *runtime.ServerInfo, next runtime.Handler) (any, error) {
		return nil, runtime.Errorf(runtime.CodePermissionDenied, "no")
	}
	serve(t, topic, runtime.WithServerInterceptors(deny))
	c := dial(t)
	if _, err := testsvc.NewArithClient(c, topic).Add(ctxTimeout(t, 5*time.Second), 2, 3); remoteCode(err) != runtime.CodePermissionDenied {
		t.Fatalf("Add through an interceptor that refuses every request = %v; want permission_denied", err)
	}
	var d describe.Server
	err := c.Invoke(ctxTimeout(t, 5*time.Second), runtime.Request{Target: runtime.Target{Topic: topic}, Method: describe.Request, Args: struct{}{}}, &d)
	if remoteCode(err) != runtime.CodePermissionDenied {
		t.Fatalf("describe through an interceptor that refuses every request = %v, with %d services described; want permission_denied", err, len(d.Services))
	}
}

// TestLifecycleCloseWhileDialing: Close returns at once while the client
// reconnects, even while it waits on a broker that accepted its TCP
// connection and never answers.
func TestLifecycleCloseWhileDialing(t *testing.T) {
	hole, accepted, closeHole := blackHole(t)
	p, url := proxy(t)
	c := dialURL(t, url, runtime.WithURLs(hole), runtime.WithLogger(slog.New(slog.DiscardHandler)))
	p.Refuse(true)
	p.Cut()
	select {
	case <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("the client did not dial the black hole within 10s of losing its connection")
	}

	closed := make(chan struct{})
	start := time.Now()
	go func() {
		c.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(2 * time.Second):
		closeHole() // ends the dial, and with it Close
		<-closed
		t.Fatalf("Close took %v, and returned only once the black hole closed its connection; want it within 2s", time.Since(start))
	}
}

// TestLifecycleDirectReplyToBadAddresses: a request whose reply_to is a
// direct reply-to address that cannot name a consumer (RabbitMQ would
// close the connection that publishes to it) is refused before its method
// runs, and counted unanswerable; the server answers other calls, and
// direct reply-to callers, as before.
func TestLifecycleDirectReplyToBadAddresses(t *testing.T) {
	topic := newTopic(t)
	ts := serve(t, topic)
	ch := rawChannel(t)
	const n, bad = 10, "amq.rabbitmq.reply-to.g2.AAAA"
	for i := range n {
		publish(t, ch, topic, amqp.Publishing{CorrelationId: fmt.Sprint("bad-", i), ReplyTo: bad, ContentType: "application/json",
			Body: fmt.Appendf(nil, `{"method": "work", "args": {"id": %d, "d": 0}}`, 1000+i)})
	}
	pollUntil(t, 20*time.Second, "the requests are counted unanswerable", func() error {
		if st := ts.Stats(); st.Unanswerable < n {
			return fmt.Errorf("server stats %+v; want %d unanswerable", st, n)
		}
		return nil
	})
	ran := 0
	for i := range n {
		ran += ts.arith.Executions(1000 + i)
	}
	if ran != 0 {
		t.Errorf("%d of the %d requests whose reply_to is %s ran; want none: the address is malformed", ran, n, bad)
	}
	if st := ts.Stats(); st.Unanswerable != n {
		t.Errorf("server stats %+v; want %d unanswerable", st, n)
	}

	if sum, err := testsvc.NewArithClient(dial(t), topic).Add(ctxTimeout(t, 5*time.Second), 2, 3); err != nil || sum != 5 {
		t.Errorf("Add(2, 3) afterwards = %d, %v", sum, err)
	}
	direct := rawChannel(t)
	replies, err := direct.Consume("amq.rabbitmq.reply-to", "",
		true,  // autoAck
		false, // exclusive
		false, // noLocal
		false, // noWait
		nil)
	if err != nil {
		t.Fatal(err)
	}
	publish(t, direct, topic, amqp.Publishing{CorrelationId: "direct", ReplyTo: "amq.rabbitmq.reply-to", ContentType: "application/json",
		Body: []byte(`{"method": "add", "args": {"v1": 2, "v2": 3}}`)})
	if d := receive(t, replies); d.CorrelationId != "direct" || string(d.Body) != `{"result":5}` {
		t.Errorf("direct reply-to reply %q %s; want \"direct\" {\"result\":5}", d.CorrelationId, d.Body)
	}
}

// pollUntil calls try until it returns nil, for up to d, and otherwise
// fails the test saying what did not happen and try's last error.
func pollUntil(t *testing.T, d time.Duration, what string, try func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := try()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, not yet: %s; last: %v", d, what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// inFlight starts call, a call of an Arith method, and returns once ts
// runs it; the channel gets call's result.
func inFlight(t *testing.T, ts *testServer, call func() error) <-chan error {
	t.Helper()
	before := ts.arith.Calls.Load()
	done := make(chan error, 1)
	go func() { done <- call() }()
	pollUntil(t, 10*time.Second, "the server runs the call", func() error {
		select {
		case err := <-done:
			done <- err
			return nil
		default:
		}
		if ts.arith.Calls.Load() == before {
			return errors.New("not run yet")
		}
		return nil
	})
	return done
}

// deleteQueues deletes queues that outlive a test.
func deleteQueues(names ...string) {
	conn, err := amqp.Dial(brokerURL())
	if err != nil {
		return
	}
	defer conn.Close()
	for _, name := range names {
		if ch, err := conn.Channel(); err == nil {
			ch.QueueDelete(name, false, false, false)
			ch.Close()
		}
	}
}

// osloExchange returns a control exchange of the test's own, deleted when
// it ends, so that tests of different settings (durable or not) never
// meet on oslo.messaging's default, "openstack".
func osloExchange(t *testing.T) string {
	name := "test.lifecycle." + uuid.NewString()[:8]
	t.Cleanup(func() {
		conn, err := amqp.Dial(brokerURL())
		if err != nil {
			return
		}
		defer conn.Close()
		if ch, err := conn.Channel(); err == nil {
			ch.ExchangeDelete(name, false, false)
		}
	})
	return name
}

// osloPeer serves topic as a server written by hand for oslo.messaging's
// protocol would (docs/PROTOCOL.md, oslo.messaging), with cfg's topology:
// it answers each call with the messages answer gives for its _msg_id, in
// turn, each in the 2.0 envelope.
func osloPeer(t *testing.T, cfg runtime.OsloConfig, topic string, answer func(msgID string) []string) {
	t.Helper()
	ch := rawChannel(t)
	durable := cfg.DurableQueues
	if err := ch.ExchangeDeclare(cfg.ControlExchange, "topic", durable,
		false, // autoDelete
		false, // internal
		false, // noWait
		nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(topic, durable,
		false, // autoDelete
		false, // exclusive
		false, // noWait
		nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(topic, topic, cfg.ControlExchange, false, nil); err != nil { // noWait
		t.Fatal(err)
	}
	requests, err := ch.Consume(topic, "",
		true,  // autoAck
		false, // exclusive
		false, // noLocal
		false, // noWait
		nil)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for d := range requests {
			var env struct {
				Message string `json:"oslo.message"`
			}
			var req struct {
				MsgID  string `json:"_msg_id"`
				ReplyQ string `json:"_reply_q"`
			}
			if json.Unmarshal(d.Body, &env) != nil || json.Unmarshal([]byte(env.Message), &req) != nil || req.ReplyQ == "" {
				continue
			}
			for _, m := range answer(req.MsgID) {
				body, _ := json.Marshal(map[string]string{"oslo.version": "2.0", "oslo.message": m})
				ch.PublishWithContext(context.Background(), "", req.ReplyQ,
					false, // mandatory
					false, // immediate
					amqp.Publishing{ContentType: "application/json", ContentEncoding: "utf-8", Body: body})
			}
		}
	}()
}

// serveOslo starts a server named "main" of testsvc.Arith on topic at url
// with opts (WithOslo among them), and waits until c, a client of the
// same protocol, gets an answer from it. It is shut down when the test
// ends.
func serveOslo(t *testing.T, url, topic string, c *runtime.Client, opts ...runtime.ServerOption) *testServer {
	t.Helper()
	ts := &testServer{arith: new(testsvc.ArithImpl), logs: new(syncBuffer), err: make(chan error, 1)}
	logger := slog.New(slog.NewTextHandler(ts.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts = append([]runtime.ServerOption{runtime.WithLogger(logger), runtime.WithServerName("main")}, opts...)
	ts.Server = runtime.NewServer(url, topic, opts...)
	testsvc.RegisterArithServer(ts.Server, ts.arith)
	go func() { ts.err <- ts.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ts.Shutdown(ctx)
	})
	arith := testsvc.NewArithClient(c, topic)
	pollUntil(t, 10*time.Second, "the oslo.messaging server answers", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := arith.Add(ctx, 1, 1)
		return err
	})
	return ts
}

// plainServer serves add on topic as a server written from
// docs/PROTOCOL.md that does not implement batches would: it shares the
// topic's queue, declared as amqprpc servers declare it, takes each
// message as one request, answers a body that is not a JSON object with a
// malformed failure, and sets no type on its replies. It returns the count
// of messages it took.
func plainServer(t *testing.T, topic string) *atomic.Int64 {
	t.Helper()
	ch := rawChannel(t)
	if err := ch.ExchangeDeclare(runtime.DefaultExchange, "topic",
		true,  // durable
		false, // autoDelete
		false, // internal
		false, // noWait
		nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(topic,
		true,  // durable
		false, // autoDelete
		false, // exclusive
		false, // noWait
		nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(topic, topic, runtime.DefaultExchange, false, nil); err != nil { // noWait
		t.Fatal(err)
	}
	if err := ch.Qos(64, 0, false); err != nil { // prefetch size, global
		t.Fatal(err)
	}
	requests, err := ch.Consume(topic, "",
		false, // autoAck
		false, // exclusive
		false, // noLocal
		false, // noWait
		nil)
	if err != nil {
		t.Fatal(err)
	}
	took := new(atomic.Int64)
	go func() {
		for d := range requests {
			took.Add(1)
			var req struct {
				Method string `json:"method"`
				Args   struct {
					V1 int `json:"v1"`
					V2 int `json:"v2"`
				} `json:"args"`
			}
			var body []byte
			switch err := json.Unmarshal(d.Body, &req); {
			case err != nil:
				body = fmt.Appendf(nil, `{"failure": {"code": "malformed", "message": %q}}`, err.Error())
			case req.Method != "add":
				body = fmt.Appendf(nil, `{"failure": {"code": "unimplemented", "message": %q}}`, "no method "+req.Method)
			default:
				body = fmt.Appendf(nil, `{"result": %d}`, req.Args.V1+req.Args.V2)
			}
			if d.ReplyTo != "" {
				ch.PublishWithContext(context.Background(), "", d.ReplyTo,
					false, // mandatory
					false, // immediate
					amqp.Publishing{ContentType: "application/json", CorrelationId: d.CorrelationId, Body: body})
			}
			d.Ack(false) // multiple
		}
	}()
	return took
}

// blackHole listens on a port of 127.0.0.1 that accepts connections and
// never writes to them, as a broker that hangs would. It returns the
// broker URL of that port, a channel that gets a value for each connection
// accepted, and a function that closes the port and every connection
// (also called when the test ends).
func blackHole(t *testing.T) (url string, accepted <-chan struct{}, closeAll func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{}, 16)
	var mu sync.Mutex
	var conns []net.Conn
	closed := false
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if closed {
				conn.Close()
			}
			conns = append(conns, conn)
			mu.Unlock()
			select {
			case got <- struct{}{}:
			default:
			}
		}
	}()
	var once sync.Once
	closeAll = func() {
		once.Do(func() {
			ln.Close()
			mu.Lock()
			defer mu.Unlock()
			closed = true
			for _, c := range conns {
				c.Close()
			}
		})
	}
	t.Cleanup(closeAll)
	return "amqp://guest:guest@" + ln.Addr().String() + "/", got, closeAll
}

// concurrency is a server interceptor that records how many requests run
// at once, at most, since the last reset.
type concurrency struct{ now, most atomic.Int32 }

func (c *concurrency) intercept(ctx context.Context, _ *runtime.ServerInfo, next runtime.Handler) (any, error) {
	n := c.now.Add(1)
	defer c.now.Add(-1)
	for m := c.most.Load(); n > m && !c.most.CompareAndSwap(m, n); m = c.most.Load() {
	}
	return next(ctx)
}

// sleepAll makes n calls of Sleep(d) at once, and waits for them.
func sleepAll(t *testing.T, arith *testsvc.ArithClient, n int, d time.Duration) {
	t.Helper()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if err := arith.Sleep(ctxTimeout(t, 10*time.Second), d); err != nil {
				t.Errorf("Sleep: %v", err)
			}
		})
	}
	wg.Wait()
}

// TestLifecycleWorkersAfterCancel: the queue whose consumer the broker
// cancelled is served by as many workers as before, not one.
func TestLifecycleWorkersAfterCancel(t *testing.T) {
	topic := newTopic(t)
	var c concurrency
	serve(t, topic, runtime.WithPrefetch(16), runtime.WithServerInterceptors(c.intercept))
	arith := testsvc.NewArithClient(dial(t, runtime.WithBatching(false)), topic)     // a delivery, and a worker, a request
	sleepAll(t, arith, 16, 200*time.Millisecond)                                     // the workers grow
	if _, err := rawChannel(t).QueueDelete(topic, false, false, false); err != nil { // ifUnused, ifEmpty, noWait
		t.Fatal(err)
	}
	pollUntil(t, 10*time.Second, "the server consumes its queue again", func() error {
		_, err := arith.Add(ctxTimeout(t, time.Second), 1, 1)
		return err
	})
	c.most.Store(0)
	sleepAll(t, arith, 16, 300*time.Millisecond)
	if most := c.most.Load(); most < 8 {
		t.Fatalf("%d requests at once after the consumer was cancelled; want most of the 16 sent at once", most)
	}
	t.Logf("%d requests at once after the consumer was cancelled", c.most.Load())
}

// TestLifecyclePrefetchHandlersAtOnce: a server runs as many of its
// topic's requests at once as its prefetch count, and no more, however
// few: its two other queues' workers do not take their places.
func TestLifecyclePrefetchHandlersAtOnce(t *testing.T) {
	for _, prefetch := range []int{1, 2, 3} {
		t.Run(fmt.Sprint(prefetch), func(t *testing.T) {
			topic := newTopic(t)
			var c concurrency
			serve(t, topic, runtime.WithPrefetch(prefetch), runtime.WithServerInterceptors(c.intercept))
			arith := testsvc.NewArithClient(dial(t, runtime.WithBatching(false)), topic)
			sleepAll(t, arith, 2*prefetch, 300*time.Millisecond)
			if most := int(c.most.Load()); most != prefetch {
				t.Fatalf("%d requests ran at once; want the prefetch count, %d", most, prefetch)
			}
		})
	}
}

// TestLifecycleBudgetWithReplyConfirms: a server whose request budget is
// spent, with reply confirms, serves batches one request after another
// without waiting, holding the budget, for a confirm its connection's
// reader holds back.
func TestLifecycleBudgetWithReplyConfirms(t *testing.T) {
	topic := newTopic(t)
	// Two deliveries at once, each a batch of about 60 KiB, more than the
	// budget: the second waits at the reader while the first is served,
	// two of its requests beside its worker and the others by it.
	serve(t, topic, runtime.WithReplyConfirms(true), runtime.WithPrefetch(2), runtime.WithMaxRequestBytes(48<<10))
	arith := testsvc.NewArithClient(dial(t), topic)
	if _, err := arith.Add(ctxTimeout(t, 5*time.Second), 1, 1); err != nil { // its reply opens the topic to batches
		t.Fatal(err)
	}
	pad := strings.Repeat("x", 10<<10)
	var wg sync.WaitGroup
	for i := range 48 {
		wg.Go(func() {
			name := fmt.Sprint(i, pad)
			p, err := arith.Echo(ctxTimeout(t, 10*time.Second), testsvc.Payload{Name: name})
			if err != nil || p.Name != name {
				t.Errorf("Echo %d: %v", i, err)
			}
		})
	}
	wg.Wait()
}

// TestLifecycleBudgetWithHeartbeats: heartbeats to oslo.messaging callers
// wait for nothing, and a request lets go of the budget when its method
// returns, before its heartbeats stop: a server whose budget is spent,
// with reply confirms, answers calls that ask for heartbeats.
func TestLifecycleBudgetWithHeartbeats(t *testing.T) {
	topic := newTopic(t)
	cfg := runtime.OsloConfig{ControlExchange: osloExchange(t), CallMonitorTimeout: 3 * time.Second} // a heartbeat every second
	c := dial(t, runtime.WithOslo(cfg))
	// A request is about 400 bytes: the budget holds one at a time, and
	// the reader waits at the second of the prefetch count's two.
	ts := serveOslo(t, brokerURL(), topic, c, runtime.WithOslo(cfg), runtime.WithReplyConfirms(true), runtime.WithPrefetch(2), runtime.WithMaxRequestBytes(500))
	defer func() {
		if t.Failed() {
			t.Logf("server logs:\n%s", ts.logs)
		}
	}()
	arith := testsvc.NewArithClient(c, topic)
	var wg sync.WaitGroup
	for range 2 { // the second waits for the first, less than the call monitor allows
		wg.Go(func() {
			if err := arith.Sleep(ctxTimeout(t, 15*time.Second), 1500*time.Millisecond); err != nil {
				t.Errorf("Sleep: %v", err)
			}
		})
	}
	wg.Wait()
}
