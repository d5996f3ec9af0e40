package runtime_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqprpc/amqprpc/internal/testsvc"
	"github.com/amqprpc/amqprpc/runtime"
)

// These tests speak to amqprpc with plain amqp091-go, as a program in
// another language following docs/PROTOCOL.md would.

// replyQueue declares an exclusive queue for replies and consumes it.
func replyQueue(t *testing.T, ch *amqp.Channel) (string, <-chan amqp.Delivery) {
	t.Helper()
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return q.Name, msgs
}

// standIn stands in for a server of topic: it declares the topic's queue
// and binding as a server would and returns the requests, auto-acked.
func standIn(t *testing.T, ch *amqp.Channel, topic string) <-chan amqp.Delivery {
	t.Helper()
	if _, err := ch.QueueDeclare(topic, false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare(runtime.DefaultExchange, "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(topic, topic, runtime.DefaultExchange, false, nil); err != nil {
		t.Fatal(err)
	}
	msgs, err := ch.Consume(topic, "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

func publish(t *testing.T, ch *amqp.Channel, topic string, pub amqp.Publishing) {
	t.Helper()
	if err := ch.PublishWithContext(context.Background(), runtime.DefaultExchange, topic, false, false, pub); err != nil {
		t.Fatal(err)
	}
}

func receive(t *testing.T, msgs <-chan amqp.Delivery) amqp.Delivery {
	t.Helper()
	select {
	case d := <-msgs:
		return d
	case <-time.After(10 * time.Second):
		t.Fatal("no reply within 10s")
	}
	panic("unreachable")
}

func TestRequestOnTheWire(t *testing.T) {
	topic := newTopic(t)
	msgs := standIn(t, rawChannel(t), topic)

	arith := testsvc.NewArithClient(dial(t), topic)
	const timeout = 5 * time.Second
	go arith.Add(ctxTimeout(t, timeout), 2, 3)
	d := receive(t, msgs)

	if d.CorrelationId == "" || uuid.Validate(d.CorrelationId) != nil {
		t.Errorf("correlation_id = %q; want a UUID", d.CorrelationId)
	}
	want := `{"method":"add","args":{"v1":2,"v2":3},"msg_id":"` + d.CorrelationId + `","batch_replies":true}`
	if string(d.Body) != want {
		t.Errorf("body = %s\nwant   %s", d.Body, want)
	}
	if d.ContentType != "application/json" {
		t.Errorf("content_type = %q; want application/json", d.ContentType)
	}
	if !strings.HasPrefix(d.ReplyTo, "amq.gen-") {
		t.Errorf("reply_to = %q; want the client's own reply queue", d.ReplyTo)
	}
	if d.Exchange != runtime.DefaultExchange || d.RoutingKey != topic {
		t.Errorf("published to exchange %q with key %q; want %q, %q", d.Exchange, d.RoutingKey, runtime.DefaultExchange, topic)
	}
	ttl, err := strconv.Atoi(d.Expiration)
	if err != nil || ttl <= 0 || ttl > int(timeout/time.Millisecond) {
		t.Errorf("expiration = %q; want the milliseconds left of the %v deadline", d.Expiration, timeout)
	}
}

func TestPlainAMQPClient(t *testing.T) {
	topic := newTopic(t)
	serve(t, topic)
	ch := rawChannel(t)
	queue, replies := replyQueue(t, ch)

	publish(t, ch, topic, amqp.Publishing{
		ContentType:   "application/json",
		CorrelationId: "call-1",
		ReplyTo:       queue,
		Body:          []byte(`{"method": "add", "args": {"v1": 2, "v2": 3}}`),
	})
	d := receive(t, replies)
	if string(d.Body) != `{"result":5}` || d.CorrelationId != "call-1" {
		t.Fatalf("reply %s with correlation_id %q; want {\"result\":5} with call-1", d.Body, d.CorrelationId)
	}

	publish(t, ch, topic, amqp.Publishing{CorrelationId: "call-2", ReplyTo: queue, Body: []byte(`{"method": "div", "args": {"a": 1, "b": 0}}`)})
	d = receive(t, replies)
	if string(d.Body) != `{"failure":{"code":"unknown","message":"divide by zero"}}` || d.CorrelationId != "call-2" {
		t.Fatalf("reply %s with correlation_id %q; want a failure for call-2", d.Body, d.CorrelationId)
	}
}

// TestBatchedReplies calls as a plain client that accepts batched replies
// would, many requests at once, and checks that each gets its one reply,
// alone or in a batch as docs/PROTOCOL.md describes; a client that does
// not say it accepts them gets each reply alone.
func TestBatchedReplies(t *testing.T) {
	topic := newTopic(t)
	serve(t, topic)
	ch := rawChannel(t)
	queue, replies := replyQueue(t, ch)
	const n = 500
	for _, accepts := range []bool{true, false} {
		for i := range n {
			body := fmt.Sprintf(`{"method": "add", "args": {"v1": %d, "v2": 1}}`, i)
			if accepts {
				body = fmt.Sprintf(`{"method": "add", "args": {"v1": %d, "v2": 1}, "batch_replies": true}`, i)
			}
			publish(t, ch, topic, amqp.Publishing{CorrelationId: "call-" + strconv.Itoa(i), ReplyTo: queue, Body: []byte(body)})
		}
		got := make(map[string]string)
		messages := 0
		for len(got) < n {
			d := receive(t, replies)
			messages++
			if d.Type != "amqprpc.replies" {
				got[d.CorrelationId] = string(d.Body)
				continue
			}
			if !accepts {
				t.Fatalf("a batch of replies to a client that did not accept them: %s", d.Body)
			}
			var batch []struct {
				ID    string          `json:"id"`
				Reply json.RawMessage `json:"reply"`
			}
			if err := json.Unmarshal(d.Body, &batch); err != nil || len(batch) < 2 || d.CorrelationId != "" {
				t.Fatalf("batch %s with correlation_id %q: %v; want 2 replies or more, no correlation_id", d.Body, d.CorrelationId, err)
			}
			for _, r := range batch {
				if _, dup := got[r.ID]; dup {
					t.Fatalf("a second reply to %s", r.ID)
				}
				got[r.ID] = string(r.Reply)
			}
		}
		for i := range n {
			if id, want := "call-"+strconv.Itoa(i), fmt.Sprintf(`{"result":%d}`, i+1); got[id] != want {
				t.Fatalf("reply to %s = %s; want %s", id, got[id], want)
			}
		}
		t.Logf("batch_replies %v: %d replies in %d messages", accepts, n, messages)
	}
}

// TestBatchOfRequests publishes several requests in one message, as
// docs/PROTOCOL.md describes: each is answered, or dropped past its
// deadline, on its own; a malformed one is answered with an error; the
// slow ones run side by side; and the message is acknowledged.
func TestBatchOfRequests(t *testing.T) {
	topic := newTopic(t)
	srv := serve(t, topic)
	ch := rawChannel(t)
	queue, replies := replyQueue(t, ch)
	now := time.Now()
	in := func(d time.Duration) int64 { return now.Add(d).UnixMilli() }
	body := fmt.Sprintf(`[
		{"id": "add", "deadline": %d, "request": {"method": "add", "args": {"v1": 2, "v2": 3}}},
		{"id": "sleep-1", "deadline": %d, "request": {"method": "sleep", "args": {"d": 1000000000}}},
		{"id": "sleep-2", "deadline": %d, "request": {"method": "sleep", "args": {"d": 1000000000}}},
		{"id": "sleep-3", "deadline": %d, "request": {"method": "sleep", "args": {"d": 1000000000}}},
		{"id": "expired", "deadline": %d, "request": {"method": "add", "args": {"v1": 1, "v2": 1}}},
		{"id": "no-method", "deadline": 0, "request": {"args": {}}},
		{"id": "unknown", "deadline": 0, "request": {"method": "nope"}}
	]`, in(10*time.Second), in(1500*time.Millisecond), in(1500*time.Millisecond), in(1500*time.Millisecond), in(-time.Second))
	publish(t, ch, topic, amqp.Publishing{Type: "amqprpc.requests", ContentType: "application/json", ReplyTo: queue, Body: []byte(body)})

	want := map[string]string{
		"add":       `{"result":5}`,
		"sleep-1":   `{"result":null}`,
		"sleep-2":   `{"result":null}`,
		"sleep-3":   `{"result":null}`,
		"no-method": `{"failure":{"code":"malformed","message":"no \"method\" in the body"}}`,
		"unknown":   `{"failure":{"code":"unimplemented","message":"topic \"` + topic + `\" has no method \"nope\""}}`,
	}
	got := make(map[string]string)
	for len(got) < len(want) {
		d := receive(t, replies)
		if d.Type == "amqprpc.replies" {
			t.Fatalf("a batch of replies to requests that did not accept them: %s", d.Body)
		}
		got[d.CorrelationId] = string(d.Body)
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("reply to %s = %s; want %s (the sleeps must run side by side to make their deadline)", id, got[id], w)
		}
	}
	select {
	case d := <-replies:
		t.Errorf("a reply to %s, past its deadline: %s", d.CorrelationId, d.Body)
	case <-time.After(200 * time.Millisecond):
	}
	if st := srv.Stats(); st.Batches != 1 || st.BatchedRequests != 7 || st.Expired != 1 || st.Malformed != 1 {
		t.Errorf("server stats %+v; want one batch of 7, one expired, one malformed", st)
	}
	requireSettled(t, srv, ch, topic)
}

// requireSettled shuts srv down and checks that nothing is left on the
// topic's queue: a delivery it had not settled would be back there.
func requireSettled(t *testing.T, srv *testServer, ch *amqp.Channel, topic string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if q, err := ch.QueueDeclarePassive(topic, false, false, false, false, nil); err != nil || q.Messages != 0 {
		t.Fatalf("%d messages on the queue after the server shut down, %v; want every delivery settled", q.Messages, err)
	}
}

// TestMalformedBatches publishes batches that are not arrays of requests,
// and one of none: the server logs and drops them without a loop, and
// keeps serving.
func TestMalformedBatches(t *testing.T) {
	topic := newTopic(t)
	srv := serve(t, topic)
	ch := rawChannel(t)
	queue, _ := replyQueue(t, ch)
	for _, body := range []string{`{"method": "add"}`, `not JSON`, `[{"id": 1}]`, `[]`} {
		publish(t, ch, topic, amqp.Publishing{Type: "amqprpc.requests", ReplyTo: queue, Body: []byte(body)})
	}
	arith := testsvc.NewArithClient(dial(t), topic)
	if sum, err := arith.Add(ctxTimeout(t, 10*time.Second), 20, 22); err != nil || sum != 42 {
		t.Fatalf("after malformed batches, Add(20, 22) = %d, %v; want 42, nil", sum, err)
	}
	requireSettled(t, srv, ch, topic)
	if st := srv.Stats(); st.Malformed != 3 {
		t.Errorf("%d malformed counted for 3 malformed batches", st.Malformed)
	}
	// One line for the incident: the log is throttled (TestAFloodIsOneLogLine).
	if n := strings.Count(srv.logs.String(), "rejecting malformed batch"); n != 1 {
		t.Errorf("%d log lines for 3 malformed batches; logs:\n%s", n, srv.logs)
	}
}

func TestClassicMsgIDRequest(t *testing.T) {
	topic := newTopic(t)
	serve(t, topic)
	ch := rawChannel(t)

	// The classic caller declares a direct exchange named after the msg_id
	// and a queue bound to it with the msg_id as routing key.
	msgID := strings.ReplaceAll(uuid.NewString(), "-", "")
	if err := ch.ExchangeDeclare(msgID, "direct", false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, msgID, msgID, false, nil); err != nil {
		t.Fatal(err)
	}
	replies, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}

	publish(t, ch, topic, amqp.Publishing{
		ContentType: "application/json",
		Body:        []byte(`{"method": "add", "args": {"v1": 2, "v2": 3}, "msg_id": "` + msgID + `"}`),
	})
	d := receive(t, replies)
	if string(d.Body) != `{"result":5}` {
		t.Fatalf("classic reply = %s; want {\"result\":5}", d.Body)
	}
	if d.Exchange != msgID || d.RoutingKey != msgID {
		t.Fatalf("classic reply came through exchange %q key %q; want %q for both", d.Exchange, d.RoutingKey, msgID)
	}
}

func TestMalformedRequests(t *testing.T) {
	topic := newTopic(t)
	srv := serve(t, topic)
	ch := rawChannel(t)
	queue, replies := replyQueue(t, ch)

	for _, tc := range []struct{ name, body string }{
		{"not JSON", `this is not JSON`},
		{"no method", `{"args": {"v1": 1}}`},
		{"args not an object", `{"method": "add", "args": [1, 2]}`},
		{"empty", ``},
	} {
		t.Run(tc.name, func(t *testing.T) {
			publish(t, ch, topic, amqp.Publishing{CorrelationId: tc.name, ReplyTo: queue, Body: []byte(tc.body)})
			d := receive(t, replies)
			var reply struct{ Failure *runtime.Error }
			if err := json.Unmarshal(d.Body, &reply); err != nil || reply.Failure == nil || reply.Failure.Code != runtime.CodeMalformed {
				t.Fatalf("reply to %q = %s; want a failure with code %q", tc.body, d.Body, runtime.CodeMalformed)
			}
			if d.CorrelationId != tc.name {
				t.Fatalf("reply correlation_id = %q; want %q", d.CorrelationId, tc.name)
			}
		})
	}
	// Without any reply path the message is only rejected and logged.
	publish(t, ch, topic, amqp.Publishing{Body: []byte(`{{{`)})

	// The server still serves, and nothing went back to the queue to loop.
	arith := testsvc.NewArithClient(dial(t), topic)
	if sum, err := arith.Add(ctxTimeout(t, 10*time.Second), 20, 22); err != nil || sum != 42 {
		t.Fatalf("after malformed requests, Add(20, 22) = %d, %v; want 42, nil", sum, err)
	}
	q, err := ch.QueueDeclarePassive(topic, false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if q.Messages != 0 {
		t.Errorf("%d messages left in the topic's queue; malformed requests must be rejected without requeue", q.Messages)
	}
	rejected := func() uint64 { return srv.Stats().Malformed }
	for deadline := time.Now().Add(5 * time.Second); rejected() < 5 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // a requeue loop would count more by now
	if n := rejected(); n != 5 {
		t.Errorf("%d malformed counted for 5 malformed requests; logs:\n%s", n, srv.logs)
	}
	if n := strings.Count(srv.logs.String(), "rejecting malformed request"); n != 1 {
		t.Errorf("%d log lines for 5 malformed requests; want 1 (throttled); logs:\n%s", n, srv.logs)
	}
}

func TestStrayRepliesAreDropped(t *testing.T) {
	topic := newTopic(t)
	ch := rawChannel(t)
	// A hand-written server that answers each request three times: first
	// with a correlation id nobody waits for, then properly, then again.
	requests := standIn(t, ch, topic)
	go func() {
		for d := range requests {
			var req struct{ Args struct{ V1, V2 int } }
			json.Unmarshal(d.Body, &req)
			for _, r := range []struct {
				id  string
				sum int
			}{{"stray-" + d.CorrelationId, -1}, {d.CorrelationId, req.Args.V1 + req.Args.V2}, {d.CorrelationId, -2}} {
				ch.PublishWithContext(context.Background(), "", d.ReplyTo, false, false, amqp.Publishing{
					CorrelationId: r.id,
					Body:          []byte(`{"result":` + strconv.Itoa(r.sum) + `}`),
				})
			}
		}
	}()

	arith := testsvc.NewArithClient(dial(t), topic)
	ctx := ctxTimeout(t, 10*time.Second)
	for i := range 20 {
		sum, err := arith.Add(ctx, i, 1)
		if err != nil || sum != i+1 {
			t.Fatalf("Add(%d, 1) = %d, %v; want %d: a stray or duplicate reply was taken", i, sum, err, i+1)
		}
	}
}

func TestPoisonMessageDoesNotLoop(t *testing.T) {
	topic := newTopic(t)
	srv := serve(t, topic)
	ch := rawChannel(t)
	queue, replies := replyQueue(t, ch)

	publish(t, ch, topic, amqp.Publishing{CorrelationId: "poison", ReplyTo: queue, Body: []byte(`{"method": "swallow", "args": {"p": "boom"}}`)})
	d := receive(t, replies)
	var reply struct{ Failure *runtime.Error }
	if err := json.Unmarshal(d.Body, &reply); err != nil || reply.Failure == nil || reply.Failure.Code != runtime.CodeInternal {
		t.Fatalf("reply to a poison message = %s; want code %s", d.Body, runtime.CodeInternal)
	}
	select {
	case d := <-replies:
		t.Fatalf("a second reply to the poison message: %s; it must not be delivered again", d.Body)
	case <-time.After(300 * time.Millisecond):
	}
	if calls := srv.arith.Calls.Load(); calls != 0 {
		t.Fatalf("the method ran %d times on a poison message", calls)
	}
	if sum, err := testsvc.NewArithClient(dial(t), topic).Add(ctxTimeout(t, 5*time.Second), 1, 2); err != nil || sum != 3 {
		t.Fatalf("after a poison message, Add = %d, %v", sum, err)
	}
}

// TestBatchesOnlyToServersThatSaySo: a client sends a topic several calls
// in a message only once a reply from it has said that its server reads
// them (type amqprpc.reply or amqprpc.replies): a server that implements
// the protocol without batches never gets one.
func TestBatchesOnlyToServersThatSaySo(t *testing.T) {
	topic := newTopic(t)
	ch := rawChannel(t)
	requests := standIn(t, ch, topic)
	var announce atomic.Bool
	var batches, batched atomic.Int64
	go func() { // a server of its own: it answers every request, in a batch or not
		for d := range requests {
			type entry struct {
				ID      string          `json:"id"`
				Request json.RawMessage `json:"request"`
			}
			entries := []entry{{ID: d.CorrelationId}}
			if d.Type == "amqprpc.requests" {
				batches.Add(1)
				entries = nil
				json.Unmarshal(d.Body, &entries)
				batched.Add(int64(len(entries)))
			}
			typ := ""
			if announce.Load() {
				typ = "amqprpc.reply"
			}
			for _, e := range entries {
				ch.Publish("", d.ReplyTo, false, false, amqp.Publishing{ContentType: "application/json", Type: typ, CorrelationId: e.ID, Body: []byte(`{"result":3}`)})
			}
		}
	}()
	c := dial(t)
	arith := testsvc.NewArithClient(c, topic)
	burst := func() {
		var wg sync.WaitGroup
		for range 200 {
			wg.Go(func() {
				if sum, err := arith.Add(ctxTimeout(t, 10*time.Second), 1, 2); err != nil || sum != 3 {
					t.Errorf("Add = %d, %v", sum, err)
				}
			})
		}
		wg.Wait()
	}
	burst()
	if n := batches.Load(); n != 0 {
		t.Fatalf("%d batches of calls to a server that never said it reads them", n)
	}
	announce.Store(true)
	arith.Add(ctxTimeout(t, 10*time.Second), 1, 2) // its reply says so
	for i := 0; i < 10 && batches.Load() == 0; i++ {
		burst()
	}
	if batches.Load() == 0 {
		t.Fatal("no batch of calls after the server said it reads them, in 2000 calls at once")
	}
	if st := c.Stats(); st.Batches != uint64(batches.Load()) || st.BatchedCalls != uint64(batched.Load()) {
		t.Fatalf("client stats %+v; the server saw %d batches of %d calls", st, batches.Load(), batched.Load())
	}
}
