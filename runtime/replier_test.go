package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func TestClassicBatchOfReplies(t *testing.T) {
	odd := "id \"quoted\" \\ \x01 é \xff"
	replies := []batchedReply{{"c1", []byte(`{"result":5}`)}, {odd, []byte(`{"failure":{"code":"internal","message":"boom"}}`)}, {"c3", []byte(`{"result":null}`)}}
	var pub amqp.Publishing
	if err := (classic{}).encodeReplies(&pub, replies); err != nil {
		t.Fatal(err)
	}
	if !json.Valid(pub.Body) || pub.Type != batchType || pub.CorrelationId != "" || pub.ContentType != contentTypeJSON {
		t.Fatalf("batch = %s, type %q, correlation_id %q, content_type %q", pub.Body, pub.Type, pub.CorrelationId, pub.ContentType)
	}
	var got []batchedReply
	batch, err := (classic{}).splitReplies(&amqp.Delivery{Type: pub.Type, ContentType: pub.ContentType, Body: pub.Body}, func(d *amqp.Delivery) {
		got = append(got, batchedReply{(classic{}).replyID(d), d.Body})
	})
	if !batch || err != nil {
		t.Fatalf("splitReplies = %v, %v; want a batch", batch, err)
	}
	// The odd id's invalid UTF-8 comes back as U+FFFD, as JSON has it.
	want := slices.Clone(replies)
	want[1].msgID = "id \"quoted\" \\ \x01 é \uFFFD"
	if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
		t.Fatalf("split replies = %q\nwant %q", got, want)
	}
	var n int
	if err := (classic{}).decodeReply(&amqp.Delivery{Body: got[0].body}, &n); err != nil || n != 5 {
		t.Fatalf("first reply of the batch = %d, %v; want 5", n, err)
	}

	// One reply goes alone, as encodeReply makes it.
	pub = amqp.Publishing{}
	if err := (classic{}).encodeReplies(&pub, replies[:1]); err != nil || pub.Type != replyType || pub.CorrelationId != "c1" || string(pub.Body) != `{"result":5}` {
		t.Fatalf("a batch of one = %s, type %q, correlation_id %q, %v; want the reply alone", pub.Body, pub.Type, pub.CorrelationId, err)
	}
	if batch, err := (classic{}).splitReplies(&amqp.Delivery{CorrelationId: "c1", Body: pub.Body}, nil); batch || err != nil {
		t.Fatalf("splitReplies(a single reply) = %v, %v; want not a batch", batch, err)
	}
	for _, body := range []string{`{"result":5}`, `[{"id":1}]`, `nope`} {
		if _, err := (classic{}).splitReplies(&amqp.Delivery{Type: batchType, Body: []byte(body)}, func(*amqp.Delivery) {}); !errors.Is(err, ErrMalformedReply) {
			t.Errorf("splitReplies(%s) = %v; want ErrMalformedReply", body, err)
		}
	}
}

// fakeReplyChannel records what a replier publishes; while hold is set,
// publish waits for a receive on release.
type fakeReplyChannel struct {
	mu      sync.Mutex
	pubs    []amqp.Publishing
	keys    []string
	fail    bool
	hold    bool
	held    chan struct{}
	release chan struct{}
	settled map[string]outcome
}

func newFakeReplyChannel() *fakeReplyChannel {
	return &fakeReplyChannel{held: make(chan struct{}), release: make(chan struct{}), settled: make(map[string]outcome)}
}

func (f *fakeReplyChannel) publish(key string, pub amqp.Publishing) bool {
	f.mu.Lock()
	hold := f.hold
	f.hold = false
	f.mu.Unlock()
	if hold {
		f.held <- struct{}{}
		<-f.release
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pubs = append(f.pubs, pub)
	f.keys = append(f.keys, key)
	return !f.fail
}

func (f *fakeReplyChannel) settle(q *queuedReply, o outcome) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, dup := f.settled[q.reply.msgID]; dup {
		panic("settled twice: " + q.reply.msgID)
	}
	f.settled[q.reply.msgID] = o
}

func reply(id string) queuedReply {
	return queuedReply{reply: batchedReply{id, []byte(`{"result":1}`)}}
}

func TestReplierBatchesWhileBusy(t *testing.T) {
	f := newFakeReplyChannel()
	r := newReplier(classic{}.encodeReplies, f.publish, f.settle)
	r.start()
	defer r.stop()

	f.hold = true
	go r.send("q1", reply("first")) // an idle session: published at once, held there
	<-f.held
	for i := range 5 {
		r.send("q1", reply(fmt.Sprint("a", i)))
	}
	r.send("q2", reply("b0"))
	r.send("q2", reply("b1"))
	close(f.release)
	r.drain()

	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.pubs) != 3 {
		t.Fatalf("%d messages published; want 3: the first reply alone, then one per reply queue", len(f.pubs))
	}
	if f.keys[0] != "q1" || f.pubs[0].CorrelationId != "first" {
		t.Errorf("first message to %s, correlation_id %q; want the first reply alone to q1", f.keys[0], f.pubs[0].CorrelationId)
	}
	for i, want := range []int{5, 2} {
		var batch []classicBatchEntry
		if err := json.Unmarshal(f.pubs[i+1].Body, &batch); err != nil || len(batch) != want || f.keys[i+1] != []string{"q1", "q2"}[i] {
			t.Errorf("message %d to %s = %s, %v; want %d replies", i+1, f.keys[i+1], f.pubs[i+1].Body, err, want)
		}
	}
	if len(f.settled) != 8 {
		t.Errorf("%d requests settled; want 8", len(f.settled))
	}
	for id, o := range f.settled {
		if o != answered {
			t.Errorf("request %s settled %v; want answered", id, o)
		}
	}
}

func TestReplierRetriesWhatDidNotGoOut(t *testing.T) {
	f := newFakeReplyChannel()
	f.fail = true
	r := newReplier(classic{}.encodeReplies, f.publish, f.settle)
	r.start()
	defer r.stop()
	f.hold = true
	go r.send("q1", reply("first"))
	<-f.held
	r.send("q1", reply("second"))
	r.send("q1", reply("third"))
	close(f.release)
	r.drain()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.settled) != 3 {
		t.Fatalf("%d requests settled; want 3", len(f.settled))
	}
	for id, o := range f.settled {
		if o != retry {
			t.Errorf("request %s settled %v; want retry, as its reply did not go out", id, o)
		}
	}
}

// TestReplierDrainEndsAtStop: a drain that waits for replies that will
// never go out (Shutdown gave up and closed the connection) returns once
// the replier is stopped, rather than block a goroutine forever.
func TestReplierDrainEndsAtStop(t *testing.T) {
	f := newFakeReplyChannel()
	r := newReplier(classic{}.encodeReplies, f.publish, f.settle)
	r.start()
	f.hold = true
	go r.send("q1", reply("first"))
	<-f.held
	r.send("q1", reply("queued"))
	drained := make(chan struct{})
	go func() {
		r.drain()
		close(drained)
	}()
	select {
	case <-drained:
		t.Fatal("drain returned with a reply still queued")
	case <-time.After(50 * time.Millisecond):
	}
	if left := r.stop(); len(left) != 1 || left[0].reply.msgID != "queued" {
		t.Errorf("stop returned %v; want the queued reply", left)
	}
	select {
	case <-drained:
	case <-time.After(5 * time.Second):
		t.Fatal("drain still waits after stop")
	}
	close(f.release)
}

func TestClassicBatchOfRequests(t *testing.T) {
	deadline := time.UnixMilli(1767225600123)
	reqs := []batchedRequest{
		{msgID: "a", deadline: deadline, body: []byte(`{"method":"add","args":{"v1":2,"v2":3},"msg_id":"a","batch_replies":true}`)},
		{msgID: "b\"", deadline: deadline.Add(time.Second), body: []byte(`{"method":"ping","msg_id":"b\""}`)},
		{msgID: "c", body: []byte(`{"method":"ping"}`)},
	}
	var pub amqp.Publishing
	if err := (classic{}).encodeRequests(&pub, "amq.gen-q", reqs); err != nil {
		t.Fatal(err)
	}
	if !json.Valid(pub.Body) || pub.Type != requestsType || pub.ReplyTo != "amq.gen-q" || pub.Headers[deadlineHeader] != deadline.Add(time.Second).UnixMilli() {
		t.Fatalf("batch = %s, type %q, reply_to %q, headers %v; want the latest deadline in the header", pub.Body, pub.Type, pub.ReplyTo, pub.Headers)
	}
	d := amqp.Delivery{Type: pub.Type, ReplyTo: pub.ReplyTo, Headers: pub.Headers, Body: pub.Body}
	got, err := (classic{}).splitRequests(&d)
	if !(classic{}).isBatch(&d) || err != nil || len(got) != 3 {
		t.Fatalf("splitRequests = %d requests, %v; want 3", len(got), err)
	}
	var r inRequest
	if err := (classic{}).decodeBatched(&d, &got[0], &r); err != nil || r.msgID != "a" || !r.deadline.Equal(deadline) || r.method != "add" || !r.batch || r.reply.key != "amq.gen-q" {
		t.Fatalf("first request = %+v, %v", r, err)
	}
	if got[1].msgID != `b"` || !got[2].deadline.IsZero() {
		t.Fatalf("requests = %+v", got)
	}
	if ids := (classic{}).returnedIDs(&amqp.Return{Type: pub.Type, Body: pub.Body}); fmt.Sprint(ids) != fmt.Sprint([]string{"a", `b"`, "c"}) {
		t.Fatalf("returnedIDs(the batch) = %q", ids)
	}
	if ids := (classic{}).returnedIDs(&amqp.Return{CorrelationId: "x"}); fmt.Sprint(ids) != "[x]" {
		t.Fatalf("returnedIDs(one request) = %q", ids)
	}
	if _, err := (classic{}).splitRequests(&amqp.Delivery{Type: requestsType, Body: []byte(`{"method":"add"}`)}); err == nil {
		t.Fatal("splitRequests(not an array) succeeded; want an error")
	}
	if (classic{}).isBatch(&amqp.Delivery{Body: []byte(`[]`)}) {
		t.Fatal("a message without the batch type is a batch")
	}
}
