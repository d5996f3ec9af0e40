package runtime

import (
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqprpc/amqprpc/internal/amqpio/amqpfake"
	"github.com/amqprpc/amqprpc/internal/wire"
)

func TestCache(t *testing.T) {
	c := newCache[string, int](2, 0)
	if _, added := c.add("a", 1); !added {
		t.Fatal("a not added")
	}
	if v, added := c.add("a", 2); added || v != 1 {
		t.Fatalf("add(a) again = %d, %v; want the first value, not added", v, added)
	}
	c.add("b", 2)
	c.add("c", 3) // forgets a, the oldest
	if _, ok := c.get("a"); ok || c.len() != 2 {
		t.Fatalf("a still there, or %d entries; want 2", c.len())
	}
	c.update("b", func(v int, ok bool) int { return v * 10 })
	if v, _ := c.get("b"); v != 20 {
		t.Fatalf("b = %d after update; want 20", v)
	}
	c.remove("b")
	if _, ok := c.get("b"); ok {
		t.Fatal("b still there after remove")
	}

	// A weighed cache forgets the oldest until its weight fits.
	w := newCache[string, int](100, 0).weighed(10, func(v int) int { return v })
	for i := range 5 {
		w.add(fmt.Sprint(i), 4)
	}
	if w.len() != 2 || w.weight != 8 {
		t.Fatalf("%d entries weighing %d; want 2 weighing 8", w.len(), w.weight)
	}

	// Entries expire.
	e := newCache[string, int](10, time.Millisecond)
	e.add("a", 1)
	time.Sleep(5 * time.Millisecond)
	if _, ok := e.get("a"); ok {
		t.Fatal("a outlived its ttl")
	}
}

func TestDedupe(t *testing.T) {
	m := newMemory(2)
	q := wire.Route{Key: "amq.gen-q"}
	a, first := m.answer(q, "a")
	if !first {
		t.Fatal("the first answer(a) is not first")
	}
	again, first := m.answer(q, "a")
	if first || again != a {
		t.Fatal("a second answer(a) does not return the first entry")
	}
	select {
	case <-again.done:
		t.Fatal("entry done before its reply")
	default:
	}
	m.remember(a, amqp.Publishing{Body: []byte("reply")})
	<-again.done
	if string(again.reply.Body) != "reply" {
		t.Fatalf("remembered reply = %q", again.reply.Body)
	}
	m.answer(q, "b")
	m.answer(q, "c") // forgets a, the oldest
	if _, first := m.answer(q, "a"); !first {
		t.Fatal("a is still remembered beyond the size of 2")
	}
	if off := newMemory(0); func() bool { e, _ := off.answer(q, "a"); return e != nil }() {
		t.Fatal("deduplication off remembers")
	}
}

// TestDedupeKeysOnTheCaller: a second caller that reuses another's request
// id is another request, and does not get the first caller's reply.
func TestDedupeKeysOnTheCaller(t *testing.T) {
	m := newMemory(8)
	first, _ := m.answer(wire.Route{Key: "amq.gen-alice"}, "1")
	m.remember(first, amqp.Publishing{Body: []byte("alice's reply")})
	if e, isFirst := m.answer(wire.Route{Key: "amq.gen-mallory"}, "1"); !isFirst || e == first {
		t.Fatal("a request of another caller with the same id is taken for a delivery again of the first")
	}
	if _, isFirst := m.answer(wire.Route{Exchange: "1", Key: "1", Declare: true}, "1"); !isFirst {
		t.Fatal("a classic request with the same id is taken for a delivery again of the first")
	}
}

// TestDedupeBoundsItsMemory: the replies kept add up to at most
// dedupeMaxBytes, whatever their number.
func TestDedupeBoundsItsMemory(t *testing.T) {
	m := newMemory(1000)
	big := make([]byte, 1<<20)
	for i := range 100 {
		e, _ := m.answer(wire.Route{Key: "q"}, fmt.Sprint(i))
		m.remember(e, amqp.Publishing{Body: big})
	}
	if m.replies.weight > dedupeMaxBytes {
		t.Fatalf("%d bytes of replies kept; want at most %d", m.replies.weight, dedupeMaxBytes)
	}
	if _, isFirst := m.answer(wire.Route{Key: "q"}, "99"); isFirst {
		t.Fatal("the newest reply was forgotten")
	}
}

// TestQuarantineCountsLosses: a request is struck once per lost
// connection, however many of its copies were in flight then, and its
// strikes go once it is served.
func TestQuarantineCountsLosses(t *testing.T) {
	m := newMemory(0)
	cast := amqp.Delivery{Body: []byte(`{"method":"store","args":{"v":1}}`)} // no id: two copies look alike
	copies := []*amqp.Delivery{&cast, &cast}
	m.lost(copies, 1)
	if m.quarantined(&cast) {
		t.Fatal("quarantined after one lost connection, with two copies in flight")
	}
	m.lost(copies[:1], 2)
	if !m.quarantined(&cast) {
		t.Fatalf("not quarantined after %d lost connections", quarantineLosses)
	}
	m.served(&cast)
	if m.quarantined(&cast) {
		t.Fatal("still quarantined once served")
	}
}

// TestTookAlready: the ids of messages taken for good are remembered, the
// last uniqueIDs of them.
func TestTookAlready(t *testing.T) {
	m := newMemory(0)
	if m.tookAlready("a", false) {
		t.Fatal("a taken before it was")
	}
	if m.tookAlready("a", true) || !m.tookAlready("a", true) {
		t.Fatal("a second a, taken when delivered, is not a repeat")
	}
	m.took("b")
	if !m.tookAlready("b", false) {
		t.Fatal("b, answered, is not remembered")
	}
	for i := range uniqueIDs {
		m.took(fmt.Sprint(i))
	}
	if m.tookAlready("a", false) || m.ids.len() != uniqueIDs {
		t.Errorf("a is remembered past %d ids, or the memory grows (%d)", uniqueIDs, m.ids.len())
	}
}

// TestQuarantineCountsRefusedReplies: a request whose reply the broker
// refused (a nack) twice is quarantined when delivered again, as one in
// flight at two lost connections is, rather than run again and again.
func TestQuarantineCountsRefusedReplies(t *testing.T) {
	m := newMemory(0)
	d := amqp.Delivery{CorrelationId: "c1", ReplyTo: "full-queue", Body: []byte(`{"method":"add"}`)}
	m.refused(&d)
	if m.quarantined(&d) {
		t.Fatal("quarantined after one refused reply")
	}
	m.lost([]*amqp.Delivery{&d}, 7) // and a lost connection, after: a strike too
	if !m.quarantined(&d) {
		t.Fatal("not quarantined after a refused reply and a lost connection")
	}
}

// TestQuarantineStrikesABatchOnce: a batch whose requests' replies the
// broker refused earns one strike, however many of its requests' replies
// were refused, as a lost connection does: delivered again, it is served
// and answered, not quarantined.
func TestQuarantineStrikesABatchOnce(t *testing.T) {
	b := amqpfake.New()
	s := directServer(t, b, WithAckAfterReply(true), WithReplyConfirms(true))
	b.HoldConfirms(true)
	body := `[{"id":"c1","deadline":0,"request":{"method":"add","args":{"v1":1,"v2":2}}},` +
		`{"id":"c2","deadline":0,"request":{"method":"add","args":{"v1":3,"v2":4}}}]`
	b.Publish(DefaultExchange, "direct", amqp.Publishing{ContentType: "application/json", Type: wire.RequestsType, ReplyTo: "reply.q", Body: []byte(body)})
	if !eventually(2*time.Second, func() bool { return b.Held() == 2 }) {
		t.Fatalf("%d replies published; want the two requests'", b.Held())
	}
	b.HoldConfirms(false)
	b.NackHeld()
	if !eventually(2*time.Second, func() bool { return b.Idle("direct") }) {
		t.Fatal("the batch was not settled")
	}
	if st := s.Stats(); st.Quarantined != 0 || st.Redelivered != 1 {
		t.Fatalf("stats %+v; want the batch delivered again and served, not quarantined", st)
	}
	got := map[string]bool{}
	for _, r := range b.Record().Replies {
		got[r.Pub.CorrelationId] = true
	}
	if !got["c1"] || !got["c2"] {
		t.Fatalf("replies to %v; want both requests answered", got)
	}
}
