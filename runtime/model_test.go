package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqprpc/amqprpc/internal/amqpio/amqpfake"
	"github.com/amqprpc/amqprpc/internal/wire"
)

// TestLifecycleModel: a server against a broker in memory
// (internal/amqpio/amqpfake) through random sequences of requests of every
// kind and of the broker's faults: a channel closed, a connection lost (by
// the broker or the network), a consumer cancelled, its queue deleted, a
// confirm nacked, a direct reply-to address refused. Each sequence has its
// seed and its server options (at least or at most once, reply confirms,
// deduplication, prefetch); once its faults end, the server must settle
// every request, then shut down, and:
//
//   - the broker saw no settlement of a delivery that was not
//     unacknowledged (a delivery settled twice, or an unknown tag);
//   - every delivery was settled exactly once, or lost with its channel;
//   - no request ran more often than its deliveries, or, at most once or
//     with deduplication, more than once;
//   - at least once, every call acknowledged was answered before its ack;
//   - the server consumes its three queues again after every cancel, and
//     as many requests at once as before (a gate of them must all run);
//   - no goroutine outlives the server.
//
// The broker's faults also come inside single operations: a channel that
// cannot be opened, a queue declaration, a consumer or a publication
// refused (each closing its channel, as RabbitMQ's do).
//
// AMQPRPC_MODEL_RUNS sets how many sequences run (default modelRuns),
// AMQPRPC_MODEL_SEED replays one.
func TestLifecycleModel(t *testing.T) {
	runs, first := modelRuns, uint64(1)
	if testing.Short() {
		runs = 100
	}
	if n, err := strconv.Atoi(os.Getenv("AMQPRPC_MODEL_RUNS")); err == nil {
		runs = n
	}
	if seed, err := strconv.ParseUint(os.Getenv("AMQPRPC_MODEL_SEED"), 10, 64); err == nil {
		runs, first = 1, seed
	}
	baseline := settledGoroutines()
	start := time.Now()
	for seed := first; seed < first+uint64(runs); seed++ {
		if err := runModel(seed, baseline); err != nil {
			t.Fatalf("sequence %d: %v\nreplay: AMQPRPC_MODEL_SEED=%d go test -run TestLifecycleModel ./runtime", seed, err, seed)
		}
	}
	t.Logf("%d sequences in %v", runs, time.Since(start).Round(time.Millisecond))
}

// modelRuns is how many sequences make test runs.
const modelRuns = 2000

// modelRequest is a request a sequence published.
type modelRequest struct {
	kind string
	ids  []int  // the work ids its requests run
	body string // as published: each is another
}

// model is one sequence.
type model struct {
	rng      *rand.Rand
	b        *amqpfake.Broker
	s        *Server
	topic    string
	nextID   int
	requests []modelRequest
	mu       sync.Mutex
	runs     map[int]int // work id: runs
	atLeast  bool
	dedupe   bool
	prefetch int
	gate     gate
}

// gate holds requests until want of them run at once, or gateWait
// passes: long enough for a loaded machine (make test runs every
// package's tests at once, with the race detector) to start them all.
const gateWait = 3 * time.Second

// gate holds requests until want of them run at once, or gateWait passes.
type gate struct {
	mu      sync.Mutex
	cond    *sync.Cond
	want    int
	running int
	opened  bool
	closed  int // requests that gave up waiting
	passed  int // requests that left it, through or not
}

func (g *gate) pass() {
	g.mu.Lock()
	defer g.mu.Unlock()
	defer func() { g.passed++ }()
	g.running++
	if g.running >= g.want {
		g.opened = true
		g.cond.Broadcast()
	}
	timer := time.AfterFunc(gateWait, func() { g.mu.Lock(); g.cond.Broadcast(); g.mu.Unlock() })
	defer timer.Stop()
	start := time.Now()
	for !g.opened && time.Since(start) < gateWait {
		g.cond.Wait()
	}
	if !g.opened {
		g.closed++
	}
}

// The direct reply-to addresses of a sequence: one of a live caller, and
// one whose node the broker refuses (both of the broker's form).
const (
	modelDirect  = "amq.rabbitmq.reply-to.g1h2AA1yZXBseUA5MjQ4ODg0AAADGgAAAABrFSjB.gj3BiMnRfRGmKCyM62fiSA=="
	modelRefused = "amq.rabbitmq.reply-to.g1h2AA1yZXBseUAxMTExMTExAAADGgAAAABrFSjB.gj3BiMnRfRGmKCyM62fiSA=="
)

func runModel(seed uint64, baseline int) error {
	m := &model{rng: rand.New(rand.NewPCG(seed, seed)), b: amqpfake.New(), topic: "model", runs: map[int]int{}}
	m.atLeast = m.rng.IntN(4) != 0
	m.dedupe = m.rng.IntN(3) == 0
	m.prefetch = 1 + m.rng.IntN(6)
	m.gate.cond = sync.NewCond(&m.gate.mu)
	opts := []ServerOption{WithServerName("s"), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		WithPrefetch(m.prefetch), WithAckAfterReply(m.atLeast), WithReplyConfirms(m.rng.IntN(2) == 0),
		WithReconnectBackoff(time.Millisecond, 4*time.Millisecond)}
	if m.dedupe {
		opts = append(opts, WithDeduplication(10000))
	}
	m.s = NewServer("amqp://fake/", m.topic, opts...)
	m.s.connect, m.s.direct.connect = m.b.Connect, m.b.Connect
	m.s.RegisterService(m.service(), struct{}{})
	m.b.Refuse(modelRefused)
	served := make(chan error, 1)
	go func() { served <- m.s.Serve() }()
	stop := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := m.s.Shutdown(ctx); err != nil {
			return fmt.Errorf("Shutdown: %w", err)
		}
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			return fmt.Errorf("Serve = %v", err)
		}
		return nil
	}
	consuming := func() bool { // its three queues: the topic's, its own, the fanout's
		return m.b.Consumers(m.topic) > 0 && m.b.ConsumersOf(m.topic+".s_") > 0 && m.b.ConsumersOf(wire.FanoutExchange(DefaultExchange, m.topic)+"_") > 0
	}
	if !eventually(2*time.Second, consuming) { // Serve fails with its first connection's error
		stop()
		return errors.New("the server does not consume its queues")
	}
	for range 20 + m.rng.IntN(40) {
		m.step()
	}
	settled := eventually(5*time.Second, func() bool {
		return m.b.Idle(m.topic) && consuming()
	})
	gated := settled && m.gateOpens()
	if err := stop(); err != nil {
		return err
	}
	if !settled {
		return fmt.Errorf("the server did not settle every request, or consume its three queues again, within 5s of the last fault: %s", m.describe())
	}
	if !gated {
		return fmt.Errorf("%d requests did not run at once (prefetch %d) after the faults: %s", m.gate.want, m.prefetch, m.describe())
	}
	if !eventually(2*time.Second, func() bool { return goruntime.NumGoroutine() <= baseline }) { // the baseline settled before the first sequence
		buf := make([]byte, 1<<20)
		return fmt.Errorf("%d goroutines outlive the server (%d before):\n%s", goruntime.NumGoroutine(), baseline, buf[:goruntime.Stack(buf, true)])
	}
	return m.check()
}

// service is the sequence's service: work(id, us) records a run of id,
// takes us microseconds, and returns id; gate() waits at the gate.
func (m *model) service() *ServiceDesc {
	return &ServiceDesc{ServiceName: "Model", Methods: []MethodDesc{{Name: "work", Handler: func(_ any, ctx context.Context, dec func(any) error) (any, error) {
		var args struct{ ID, US int }
		if err := dec(&args); err != nil {
			return nil, err
		}
		m.mu.Lock()
		m.runs[args.ID]++
		m.mu.Unlock()
		time.Sleep(time.Duration(args.US) * time.Microsecond)
		return args.ID, nil
	}}, {Name: "gate", Handler: func(any, context.Context, func(any) error) (any, error) {
		m.gate.pass()
		return nil, nil
	}}}}
}

// gateOpens sends as many requests through the gate as the server runs at
// once from the topic's queue (its prefetch count) and reports whether
// they all ran at once.
//
// A worker may still be busy with an earlier request (at most once, its
// delivery was acknowledged before it ran, and its reply may be retrying
// a route): the gate is tried up to three times; a server that runs fewer
// requests at once for good fails each.
func (m *model) gateOpens() bool {
	for range 3 {
		m.gate.mu.Lock()
		m.gate.want, m.gate.running, m.gate.opened, m.gate.closed, m.gate.passed = m.prefetch, 0, false, 0, 0
		m.gate.mu.Unlock()
		for range m.prefetch {
			m.b.Publish(DefaultExchange, m.topic, amqp.Publishing{ContentType: "application/json", Body: []byte(`{"method":"gate"}`)})
		}
		left := eventually(gateWait+2*time.Second, func() bool { // every request through the gate, and settled
			m.gate.mu.Lock()
			defer m.gate.mu.Unlock()
			return m.gate.passed == m.prefetch && m.b.Idle(m.topic)
		})
		if !left {
			return false
		}
		m.gate.mu.Lock()
		ok := m.gate.opened && m.gate.closed == 0
		m.gate.mu.Unlock()
		if ok {
			return true
		}
	}
	return false
}

// settledGoroutines returns how many goroutines run once their number has
// not changed for a while: those of earlier tests have ended.
func settledGoroutines() int {
	n := goruntime.NumGoroutine()
	for stable := 0; stable < 10; time.Sleep(10 * time.Millisecond) {
		if now := goruntime.NumGoroutine(); now == n {
			stable++
		} else {
			n, stable = now, 0
		}
	}
	return n
}

// step publishes a request or injects a fault.
func (m *model) step() {
	r, b := m.rng, m.b
	switch n := r.IntN(100); {
	case n < 55:
		m.publish()
	case n < 62:
		b.CloseChannel(r.Int())
	case n < 68:
		b.LoseConnection(r.Int(), r.IntN(2) == 0)
	case n < 74:
		b.CancelConsumer(r.Int())
	case n < 78:
		b.NackNext()
	case n < 80:
		b.DeleteQueue(m.topic)
	case n < 85:
		b.FailNext([]string{"channel", "declare", "consume", "publish"}[r.IntN(4)])
	default:
		time.Sleep(time.Duration(r.IntN(300)) * time.Microsecond)
	}
}

// work returns the body of a request for work of a new id, with more
// members.
func (m *model) work(more string) (int, string) {
	m.nextID++
	return m.nextID, fmt.Sprintf(`{"method":"work","args":{"ID":%d,"US":%d}%s}`, m.nextID, m.rng.IntN(200), more)
}

// publish publishes a request of a random kind to the topic.
func (m *model) publish() {
	kinds := []string{"call", "call", "call", "batch", "direct", "refused", "classic", "gone", "cast", "malformed", "expired"}
	kind := kinds[m.rng.IntN(len(kinds))]
	id, body := m.work("")
	pub := amqp.Publishing{ContentType: "application/json", CorrelationId: "c" + strconv.Itoa(id), ReplyTo: "reply.q", Body: []byte(body)}
	ids := []int{id}
	switch kind {
	case "batch":
		var entries []string
		for i := range 1 + m.rng.IntN(3) {
			if i > 0 {
				id, body = m.work(`,"batch_replies":true`)
				ids = append(ids, id)
			}
			entries = append(entries, fmt.Sprintf(`{"id":"c%d","deadline":0,"request":%s}`, id, body))
		}
		pub = amqp.Publishing{ContentType: "application/json", Type: wire.RequestsType, ReplyTo: "reply.q", Body: []byte("[" + strings.Join(entries, ",") + "]")}
	case "direct":
		pub.ReplyTo = modelDirect
	case "refused":
		pub.ReplyTo = modelRefused
	case "classic", "gone":
		msgID := "k" + strconv.Itoa(id)
		pub = amqp.Publishing{ContentType: "application/json", Body: []byte(strings.TrimSuffix(body, "}") + fmt.Sprintf(`,"msg_id":%q}`, msgID))}
		if kind == "classic" {
			m.b.DeclareExchange(msgID, amqp.ExchangeDirect, false, true)
		}
	case "cast":
		pub.ReplyTo, pub.CorrelationId = "", ""
	case "malformed":
		pub.Body = []byte("nope " + strconv.Itoa(id))
	case "expired":
		pub.Headers = amqp.Table{wire.DeadlineHeader: time.Now().Add(-time.Second).UnixMilli()}
	}
	if m.b.Publish(DefaultExchange, m.topic, pub) > 0 { // not while the queue is deleted
		m.requests = append(m.requests, modelRequest{kind, ids, string(pub.Body)})
	}
}

// check checks what the broker recorded against the invariants.
func (m *model) check() error {
	rec := m.b.Record()
	if len(rec.Violations) > 0 {
		return fmt.Errorf("the broker saw: %s", strings.Join(rec.Violations, "; "))
	}
	for _, d := range rec.Deliveries {
		if d.Settled == "" {
			return fmt.Errorf("delivery %d of message %d was never settled nor lost", d.Tag, d.MsgID)
		}
	}
	replied := m.replies(rec.Replies)
	for _, req := range m.requests {
		msg := m.message(rec, req)
		if msg == nil {
			return fmt.Errorf("a %s request (ids %v) is not on the broker", req.kind, req.ids)
		}
		for _, id := range req.ids {
			runs := m.runs[id]
			switch {
			case runs > msg.Taken:
				return fmt.Errorf("work %d (%s) ran %d times in %d deliveries", id, req.kind, runs, msg.Taken)
			case runs > 1 && !m.atLeast:
				return fmt.Errorf("work %d (%s) ran %d times, at most once", id, req.kind, runs)
			case runs > 1 && m.dedupe && req.kind != "cast":
				return fmt.Errorf("work %d (%s) ran %d times with deduplication", id, req.kind, runs)
			case (req.kind == "expired" || req.kind == "malformed") && runs > 0:
				return fmt.Errorf("work %d (%s) ran", id, req.kind)
			case req.kind == "expired" && m.atLeast && msg.State == "acked": // dead-lettered where the queue says
				return fmt.Errorf("work %d, past its deadline, was acknowledged, not rejected", id)
			}
			// At least once: a call acknowledged was answered before.
			if m.atLeast && msg.State == "acked" && (req.kind == "call" || req.kind == "batch" || req.kind == "direct" || req.kind == "classic") {
				if at, ok := replied[replyOf(req.kind, id)]; !ok || at > msg.Acked {
					return fmt.Errorf("work %d (%s) acked (at %d) before its reply (at %d, %v): %s", id, req.kind, msg.Acked, at, ok, m.describe())
				}
			}
		}
	}
	return nil
}

// replyOf is where the reply to work id of kind is found among the
// replies: its correlation id, or its classic exchange.
func replyOf(kind string, id int) string {
	if kind == "classic" {
		return "k" + strconv.Itoa(id)
	}
	return "c" + strconv.Itoa(id)
}

// replies returns when the first reply to each request went out, by
// replyOf, the replies in batches among them.
func (m *model) replies(rs []amqpfake.Reply) map[string]int64 {
	first := map[string]int64{}
	add := func(k string, seq int64) {
		if _, ok := first[k]; !ok {
			first[k] = seq
		}
	}
	for _, r := range rs {
		switch {
		case r.Exchange != "":
			add(r.Exchange, r.Seq)
		case r.Pub.Type == wire.BatchType:
			var batch []struct{ ID string }
			json.Unmarshal(r.Pub.Body, &batch)
			for _, e := range batch {
				add(e.ID, r.Seq)
			}
		default:
			add(r.Pub.CorrelationId, r.Seq)
		}
	}
	return first
}

// message returns the message of req on the broker.
func (m *model) message(rec amqpfake.Record, req modelRequest) *amqpfake.Message {
	for i := range rec.Messages {
		if msg := &rec.Messages[i]; string(msg.Pub.Body) == req.body {
			return msg
		}
	}
	return nil
}

// describe says what the sequence did, for a failure.
func (m *model) describe() string {
	var kinds []string
	for _, r := range m.requests {
		kinds = append(kinds, r.kind)
	}
	return fmt.Sprintf("at least once %v, deduplication %v, requests %v", m.atLeast, m.dedupe, kinds)
}

// eventually polls cond until it holds or d passes.
func eventually(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); ; time.Sleep(time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}
