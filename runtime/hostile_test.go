package runtime_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqprpc/amqprpc/internal/hostile"
	"github.com/amqprpc/amqprpc/internal/testsvc"
	"github.com/amqprpc/amqprpc/internal/wire"
	"github.com/amqprpc/amqprpc/runtime"
)

// The hostile-peer suite: a plain AMQP client, with no amqprpc code, sends
// a server each message that once cost it its connection, and each bad
// input docs/PROTOCOL.md covers. For each, the server answers as the
// protocol says or rejects the message, keeps its connection, answers a
// normal call right after, and publishes nothing outside reply paths.

// peerChannel opens a channel of a plain amqp091-go connection whose
// frames patch may rewrite (nil leaves them alone).
func peerChannel(t *testing.T, patch func([]byte) []byte) *amqp.Channel {
	t.Helper()
	conn, err := hostile.Dial(brokerURL(), patch)
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

// stillServing fails the test unless the server kept its connection and
// answers a normal call; it returns how long the call took.
func stillServing(t *testing.T, ts *testServer, arith *testsvc.ArithClient) time.Duration {
	t.Helper()
	start := time.Now()
	if sum, err := arith.Add(ctxTimeout(t, 5*time.Second), 2, 3); err != nil || sum != 5 {
		t.Fatalf("Add after the message = %d, %v", sum, err)
	}
	took := time.Since(start)
	if logs := ts.logs.String(); strings.Contains(logs, "connection to the broker lost") {
		t.Fatalf("the server lost its connection:\n%s", logs)
	}
	return took
}

// failureOf decodes a reply that must be a failure.
func failureOf(t *testing.T, d amqp.Delivery) *runtime.Error {
	t.Helper()
	var reply struct{ Failure *runtime.Error }
	if err := json.Unmarshal(d.Body, &reply); err != nil || reply.Failure == nil {
		t.Fatalf("reply %s; want a failure", d.Body)
	}
	return reply.Failure
}

// waitStats waits until the server's counts reach want.
func waitStats(t *testing.T, ts *testServer, want func(runtime.ServerStats) bool) runtime.ServerStats {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := ts.Stats()
		if want(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("server stats %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestHostileHeaders(t *testing.T) {
	topic := newTopic(t)
	ts := serve(t, topic)
	arith := testsvc.NewArithClient(dial(t), topic)
	queue, replies := replyQueue(t, rawChannel(t))
	add := []byte(`{"method": "add", "args": {"v1": 2, "v2": 3}}`)

	for _, tc := range []struct {
		name    string
		patch   func([]byte) []byte
		headers amqp.Table
		failure string // "" for the result 5
	}{
		{"the deadline header as 'L', as py-amqp writes it", hostile.LongLongU("amqprpc-deadline"),
			amqp.Table{"amqprpc-deadline": time.Now().Add(time.Minute).UnixMilli()}, ""},
		{"an integer header outside int32 as 'L'", hostile.LongLongU("x-count"), amqp.Table{"x-count": int64(1) << 40}, ""},
		{"the deadline header as an int32", nil, amqp.Table{"amqprpc-deadline": int32(1)}, "drop"},
		{"headers nested 40 deep", nil, amqp.Table{"deep": hostile.Nested(40)}, "nested more than 32 deep"},
		{"a header table of 10000 entries", nil, amqp.Table{"wide": hostile.Wide(10000)}, "more than 8192 entries"},
		{"a header array of 10000 fields", nil, amqp.Table{"long": make([]any, 10000)}, "more than 8192 entries"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := "hostile-" + strings.ReplaceAll(tc.name, " ", "-")[:20]
			ch := peerChannel(t, tc.patch)
			publish(t, ch, topic, amqp.Publishing{CorrelationId: id, ReplyTo: queue, Headers: tc.headers, Body: add})
			switch tc.failure {
			case "drop": // a deadline in 1970 is read, in any width, and the request dropped
				select {
				case d := <-replies:
					t.Fatalf("a request past its deadline was answered: %s", d.Body)
				case <-time.After(300 * time.Millisecond):
				}
				waitStats(t, ts, func(st runtime.ServerStats) bool { return st.Expired == 1 })
			case "":
				if d := receive(t, replies); d.CorrelationId != id || string(d.Body) != `{"result":5}` {
					t.Fatalf("reply %q %s; want %q {\"result\":5}", d.CorrelationId, d.Body, id)
				}
			default:
				d := receive(t, replies)
				if f := failureOf(t, d); d.CorrelationId != id || f.Code != runtime.CodeMalformed || !strings.Contains(f.Message, tc.failure) {
					t.Fatalf("reply %q %+v; want %q, code malformed, saying %q", d.CorrelationId, f, id, tc.failure)
				}
			}
			t.Logf("a normal call after it: %v", stillServing(t, ts, arith))
		})
	}
	requireSettled(t, ts, rawChannel(t), topic)
}

// TestClientSurvivesHostileReplies: whatever can publish to a client's
// reply queue cannot take the client's connection, nor fail its calls in
// flight, with headers the client's AMQP library cannot read.
func TestClientSurvivesHostileReplies(t *testing.T) {
	topic := newTopic(t)
	peer := peerChannel(t, hostile.LongLongU("x-big"))
	requests := standIn(t, peer, topic)
	go func() {
		for d := range requests {
			var req struct {
				MsgID string `json:"msg_id"`
			}
			json.Unmarshal(d.Body, &req)
			for _, headers := range []amqp.Table{{"x-big": int64(1) << 40}, {"deep": hostile.Nested(40)}, {"wide": hostile.Wide(10000)}} {
				// a stray reply, then the call's own, each with headers
				// amqp091-go cannot read
				peer.Publish("", d.ReplyTo, false, false, amqp.Publishing{CorrelationId: "stray", Headers: headers, Body: []byte(`{"result":1}`)})
			}
			peer.Publish("", d.ReplyTo, false, false, amqp.Publishing{CorrelationId: d.CorrelationId, Headers: amqp.Table{"deep": hostile.Nested(40), "x-big": int64(1) << 40}, Body: []byte(`{"result":5}`)})
		}
	}()
	arith := testsvc.NewArithClient(dial(t, runtime.WithBatching(false)), topic)
	for i := range 3 {
		if sum, err := arith.Add(ctxTimeout(t, 5*time.Second), 2, 3); err != nil || sum != 5 {
			t.Fatalf("call %d: Add = %d, %v; want 5", i, sum, err)
		}
	}
}

func TestHostileReplyPaths(t *testing.T) {
	topic := newTopic(t)
	ts := serve(t, topic)
	arith := testsvc.NewArithClient(dial(t), topic)
	ch := rawChannel(t)
	queue, replies := replyQueue(t, ch)
	long := strings.Repeat("x", 300)
	add := func(msgID string) []byte {
		return fmt.Appendf(nil, `{"method": "add", "args": {"v1": 2, "v2": 3}, "msg_id": %q}`, msgID)
	}

	// Spies on every exchange a classic reply must not reach: what they
	// receive was published outside reply paths.
	if err := ch.ExchangeDeclare("test.hostile.topic", "topic", false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare("test.hostile.durable-direct", "direct", true, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	waitServing(t, topic, "main") // the fanout exchange exists
	spies := map[string]string{   // exchange: the routing key a reply through it would have
		"amq.topic": "amq.topic", "amq.direct": "amq.direct", runtime.DefaultExchange: runtime.DefaultExchange,
		wire.FanoutExchange(runtime.DefaultExchange, topic): "", "test.hostile.topic": "test.hostile.topic", "test.hostile.durable-direct": "test.hostile.durable-direct",
	}
	var spied []<-chan amqp.Delivery
	for exchange, key := range spies {
		q, err := ch.QueueDeclare("", false, true, true, false, nil)
		if err == nil {
			err = ch.QueueBind(q.Name, key, exchange, false, nil)
		}
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := ch.Consume(q.Name, "", true, true, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		spied = append(spied, msgs)
	}

	cases := []struct {
		name string
		pub  amqp.Publishing
	}{
		{"a direct reply-to address naming an unknown node", amqp.Publishing{CorrelationId: "drt", ReplyTo: hostile.UnknownNode, Body: add("")}},
		{"the same, accepting batched replies", amqp.Publishing{CorrelationId: "drt", ReplyTo: hostile.UnknownNode, Body: []byte(`{"method": "add", "batch_replies": true}`)}},
		{"a direct reply-to address of the broker's form naming an unknown node", amqp.Publishing{CorrelationId: "drt", ReplyTo: hostile.UnknownNodeHash, Body: add("")}},
		{"the same again, its node now known to be refused", amqp.Publishing{CorrelationId: "drt", ReplyTo: hostile.UnknownNodeHash, Body: add("")}},
		{"a msg_id of 300 bytes for a correlation_id", amqp.Publishing{ReplyTo: queue, Body: add(long)}},
		{"a classic msg_id of 300 bytes", amqp.Publishing{Body: add(long)}},
		{"a batch entry id of 300 bytes", amqp.Publishing{Type: "amqprpc.requests", ReplyTo: queue,
			Body: fmt.Appendf(nil, `[{"id": %q, "deadline": 0, "request": {"method": "add", "args": {"v1": 2, "v2": 3}}}]`, long)}},
	}
	for exchange := range spies {
		cases = append(cases, struct {
			name string
			pub  amqp.Publishing
		}{"a classic msg_id naming exchange " + exchange, amqp.Publishing{Body: add(exchange)}})
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			publish(t, peerChannel(t, nil), topic, tc.pub)
			st := waitStats(t, ts, func(st runtime.ServerStats) bool { return st.Unanswerable >= uint64(i+1) })
			t.Logf("a normal call after it: %v", stillServing(t, ts, arith))
			if st = ts.Stats(); st.Unanswerable != uint64(i+1) {
				t.Fatalf("%d requests counted unanswerable; want %d: the request came back", st.Unanswerable, i+1)
			}
		})
	}
	// Refused before running: all but the requests whose reply path only
	// the broker can judge: the first to a direct reply-to address of the
	// broker's form whose node the broker refuses (the second, to the same
	// node, is refused before it runs), and the two exchanges that exist
	// but are not classic reply exchanges (and the normal call after each
	// case).
	if calls := ts.arith.Calls.Load() - int64(len(cases)); calls != 3 {
		t.Errorf("the method ran %d times for requests that could not be answered; want 3", calls)
	}
	select {
	case d := <-replies:
		t.Errorf("a reply to a request that cannot be answered: %s", d.Body)
	default:
	}
	time.Sleep(100 * time.Millisecond)
	for _, msgs := range spied {
		select {
		case d := <-msgs:
			t.Errorf("published outside reply paths, to %q with key %q: %s", d.Exchange, d.RoutingKey, d.Body)
		default:
		}
	}
	requireSettled(t, ts, rawChannel(t), topic)
}

// TestDirectReplyTo: a caller that asks for its reply through RabbitMQ's
// direct reply-to gets it, as one that asks for it on a queue does.
func TestDirectReplyTo(t *testing.T) {
	topic := newTopic(t)
	ts := serve(t, topic)
	ch := rawChannel(t)
	replies, err := ch.Consume("amq.rabbitmq.reply-to", "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		id := fmt.Sprint("direct-", i)
		publish(t, ch, topic, amqp.Publishing{CorrelationId: id, ReplyTo: "amq.rabbitmq.reply-to", Body: []byte(`{"method": "add", "args": {"v1": 2, "v2": 3}}`)})
		if d := receive(t, replies); d.CorrelationId != id || string(d.Body) != `{"result":5}` {
			t.Fatalf("reply %q %s", d.CorrelationId, d.Body)
		}
	}
	if st := ts.Stats(); st != (runtime.ServerStats{}) {
		t.Fatalf("stats %+v; want none rejected", st)
	}
}

// TestFailuresDoNotEchoWhatTheyWereSent: a failure quotes what the caller
// sent, bounded: 1 MB in is not 1 MB out.
func TestFailuresDoNotEchoWhatTheyWereSent(t *testing.T) {
	topic := newTopic(t)
	ts := serve(t, topic)
	ch := rawChannel(t)
	queue, replies := replyQueue(t, ch)
	huge := strings.Repeat("m", 1<<20)
	for _, body := range []string{
		fmt.Sprintf(`{"method": %q, "args": {}}`, huge),
		fmt.Sprintf(`{"method": "add", "args": {%q: 1}}`, huge),
		fmt.Sprintf(`{"method": "add", "args": {"v1": %q}}`, huge),
		fmt.Sprintf(`{"method": "add", "args": %q}`, huge),
		fmt.Sprintf(`[%q]`, huge),
	} {
		publish(t, ch, topic, amqp.Publishing{CorrelationId: "echo", ReplyTo: queue, Body: []byte(body)})
		d := receive(t, replies)
		if f := failureOf(t, d); len(d.Body) > 1024 {
			t.Errorf("a failure of %d bytes (%.80s...) for a request of %d bytes", len(d.Body), f.Message, len(body))
		}
	}
	stillServing(t, ts, testsvc.NewArithClient(dial(t), topic))
}

// TestBatchOverTheBodyLimit: a batch of requests larger than the server's
// limit is rejected unanswered, as docs/PROTOCOL.md says: no caller could
// match an answer.
func TestBatchOverTheBodyLimit(t *testing.T) {
	topic := newTopic(t)
	ts := serve(t, topic, runtime.WithMaxBodySize(4096))
	ch := rawChannel(t)
	queue, replies := replyQueue(t, ch)
	entry := `{"id": "e", "deadline": 0, "request": {"method": "add", "args": {"v1": 2, "v2": 3}}}`
	body := "[" + strings.Repeat(entry+",", 100) + entry + "]"
	publish(t, ch, topic, amqp.Publishing{Type: "amqprpc.requests", ReplyTo: queue, Body: []byte(body)})
	waitStats(t, ts, func(st runtime.ServerStats) bool { return st.Malformed == 1 })
	select {
	case d := <-replies:
		t.Fatalf("an answer no caller can match: %q %s", d.CorrelationId, d.Body)
	case <-time.After(200 * time.Millisecond):
	}
	stillServing(t, ts, testsvc.NewArithClient(dial(t), topic))
	requireSettled(t, ts, rawChannel(t), topic)
}

// TestQuarantineAfterTwoLostConnections: a request in flight each time the
// server's connection is lost, for whatever reason (here the network; in
// life, a broker or a library that closes the connection over something
// no check foresaw), is rejected when it comes back after the second
// loss, rather than cost the server its connection forever, and
// dead-lettered where its queue has a dead-letter exchange; the server
// serves other requests again soon after each loss.
func TestQuarantineAfterTwoLostConnections(t *testing.T) {
	topic := newTopic(t)
	dead := deadLetters(t, topic)
	p, url := proxy(t)
	srv := serveVia(t, url, topic, "main", fastReconnect)
	arith := testsvc.NewArithClient(dial(t), topic)
	go arith.Work(ctxTimeout(t, 8*time.Second), 7, time.Second) // ends at its deadline, or when the test ends

	for loss := 1; loss <= quarantineLosses; loss++ {
		// Work runs: first alone, then delivered again beside the Add
		eventually(t, "Work runs", func() bool { return srv.arith.Calls.Load() >= int64(2*loss-1) })
		cut := time.Now()
		p.Cut()
		if sum, err := arith.Add(ctxTimeout(t, 5*time.Second), 2, 3); err != nil || sum != 5 {
			t.Fatalf("Add after loss %d = %d, %v", loss, sum, err)
		}
		took := time.Since(cut)
		t.Logf("loss %d: a normal call answered %v after it", loss, took)
		if took > 2*time.Second {
			t.Errorf("loss %d: the server served again %v after it; want within 2s", loss, took)
		}
	}
	waitStats(t, srv, func(st runtime.ServerStats) bool { return st.Quarantined == 1 })
	time.Sleep(1500 * time.Millisecond) // longer than Work takes: a third run would have ended
	if runs := srv.arith.Executions(7); runs != quarantineLosses {
		t.Fatalf("Work ran %d times; want %d: it ran again after its second lost connection\n%s", runs, quarantineLosses, srv.logs)
	}
	if !strings.Contains(srv.logs.String(), "quarantining a request") {
		t.Errorf("no log line for the quarantined request:\n%s", srv.logs)
	}
	if dead != nil {
		if d := receive(t, dead); !strings.Contains(string(d.Body), `"method":"work"`) {
			t.Errorf("dead-lettered %s; want the Work request", d.Body)
		}
	}
	requireSettled(t, srv, rawChannel(t), topic)
}

// deadLetters gives the queue of topic a dead-letter exchange, by a policy
// of the test node's (scripts/cluster.sh, AMQPRPC_CLUSTER_DIR), and returns
// the messages dead-lettered; nil, and nothing checked, when the tests run
// against a broker that is not theirs to configure.
func deadLetters(t *testing.T, topic string) <-chan amqp.Delivery {
	t.Helper()
	if os.Getenv("AMQPRPC_CLUSTER_DIR") == "" {
		t.Log("not the tests' own broker node: dead-lettering not checked")
		return nil
	}
	ch := rawChannel(t)
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	dead, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	policy := "amqprpc-test-" + topic
	definition := fmt.Sprintf(`{"dead-letter-exchange": "", "dead-letter-routing-key": %q}`, q.Name)
	if out, err := exec.Command("../scripts/cluster.sh", "ctl", "1", "set_policy", "--apply-to", "queues", policy, "^"+regexp.QuoteMeta(topic)+"$", definition).CombinedOutput(); err != nil {
		t.Fatalf("rabbitmqctl set_policy: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("../scripts/cluster.sh", "ctl", "1", "clear_policy", policy).Run() })
	return dead
}

// quarantineLosses is how many lost connections docs/PROTOCOL.md lets a
// request be in flight at before it is quarantined.
const quarantineLosses = 2

// TestAFloodIsOneLogLine: a hundred malformed requests are a hundred
// failures to their caller and a hundred in Stats, but one line in the
// server's log, not a hundred: an operator reads that an incident began.
func TestAFloodIsOneLogLine(t *testing.T) {
	topic := newTopic(t)
	ts := serve(t, topic)
	ch := rawChannel(t)
	queue, replies := replyQueue(t, ch)
	const n = 100
	for i := range n {
		publish(t, ch, topic, amqp.Publishing{CorrelationId: fmt.Sprint("flood-", i), ReplyTo: queue, Body: []byte(`{"args": {}}`)})
	}
	for range n {
		if f := failureOf(t, receive(t, replies)); f.Code != runtime.CodeMalformed {
			t.Fatalf("failure %+v; want malformed", f)
		}
	}
	waitStats(t, ts, func(st runtime.ServerStats) bool { return st.Malformed == n })
	if lines := strings.Count(ts.logs.String(), "rejecting malformed request"); lines != 1 {
		t.Fatalf("%d log lines for %d malformed requests; want 1:\n%s", lines, n, ts.logs.String())
	}
}
