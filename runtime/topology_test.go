package runtime_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqprpc/amqprpc/internal/testsvc"
	"github.com/amqprpc/amqprpc/internal/wire"
	"github.com/amqprpc/amqprpc/runtime"
)

// TestCheckDeclaredQueues: the suite's check of the topology refuses what
// RabbitMQ 4.3 refuses, amqprpc's topology before 4.3 included.
func TestCheckDeclaredQueues(t *testing.T) {
	for _, q := range []runtime.DeclaredQueue{
		{Name: "calc"},                     // the topic queue before: transient, shared
		{Name: "calc.a", AutoDelete: true}, // a server's queue before: auto-delete, shared
		{Name: "lazy", Durable: true, Args: map[string]any{"x-queue-mode": "lazy"}},
		{Name: "v1", Durable: true, Args: map[string]any{"x-queue-version": int64(1)}},
	} {
		if err := checkDeclaredQueues([]runtime.DeclaredQueue{q}); err == nil {
			t.Errorf("%+v passes the check; RabbitMQ 4.3 refuses it", q)
		}
	}
	ok := []runtime.DeclaredQueue{{Name: "calc", Durable: true, Args: map[string]any{"x-queue-type": "quorum"}}, {Name: "amq.gen-x", Exclusive: true}}
	if err := checkDeclaredQueues(ok); err != nil {
		t.Error(err)
	}
}

// declaredSince returns the queues declared after the first n.
func declaredSince(n int) []runtime.DeclaredQueue { return runtime.DeclaredQueues()[n:] }

// TestTopology: what a server and a client declare, by default and with
// each option, as docs/PROTOCOL.md says, and as the broker has it.
func TestTopology(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []runtime.ServerOption
		args string
	}{
		{"default", nil, "map[]"},
		{"quorum", []runtime.ServerOption{runtime.WithQueueType(runtime.QueueQuorum)}, "map[x-delivery-limit:10 x-queue-type:quorum]"},
		{"classic, expiring, dead-lettering", []runtime.ServerOption{runtime.WithQueueType(runtime.QueueClassic), runtime.WithQueueExpiry(time.Minute), runtime.WithDeadLetterExchange("test.dead")},
			"map[x-dead-letter-exchange:test.dead x-expires:60000]"},
		{"quorum without a delivery limit", []runtime.ServerOption{runtime.WithQueueType(runtime.QueueQuorum), runtime.WithDeliveryLimit(0)}, "map[x-queue-type:quorum]"},
		{"classic, bounded", []runtime.ServerOption{runtime.WithQueueLimit(100)}, "map[x-max-length:100 x-overflow:reject-publish]"},
		{"quorum, bounded", []runtime.ServerOption{runtime.WithQueueType(runtime.QueueQuorum), runtime.WithQueueLimit(100)}, "map[x-delivery-limit:10 x-max-length:100 x-overflow:reject-publish x-queue-type:quorum]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := len(runtime.DeclaredQueues())
			topic := newTopic(t)
			serve(t, topic, tc.opts...)
			dial(t)
			byName := map[string]runtime.DeclaredQueue{}
			for _, q := range declaredSince(n) {
				switch {
				case q.Name == topic:
					byName["topic"] = q
				case strings.HasPrefix(q.Name, topic+".main_"):
					byName["own"] = q
				case strings.HasPrefix(q.Name, wire.FanoutExchange(runtime.DefaultExchange, topic)+"_"):
					byName["fanout"] = q
				case q.Name == "":
					byName["reply"] = q
				}
			}
			if q := byName["topic"]; !q.Durable || q.Exclusive || q.AutoDelete || fmt.Sprint(q.Args) != tc.args {
				t.Errorf("topic queue %+v; want durable, shared, with %s", q, tc.args)
			}
			for _, kind := range []string{"own", "fanout", "reply"} {
				if q := byName[kind]; !q.Exclusive {
					t.Errorf("%s queue %+v; want exclusive", kind, q)
				}
			}
			// The broker has the topic's queue as declared: a declaration
			// with the same settings passes, with others fails.
			ch := rawChannel(t)
			if _, err := ch.QueueDeclare(topic, true, false, false, false, amqp.Table(byName["topic"].Args)); err != nil {
				t.Fatalf("the broker's queue differs from what the server declared: %v", err)
			}
		})
	}
}

// TestTopologyMismatchOnReconnect: a server that, reconnecting, finds its
// topic's queue declared with other settings stops with
// ErrTopologyMismatch rather than retry forever.
func TestTopologyMismatchOnReconnect(t *testing.T) {
	topic := newTopic(t)
	p, url := proxy(t)
	srv := serveVia(t, url, topic, "main", fastReconnect)
	p.Refuse(true)
	p.Cut()
	ch := rawChannel(t)
	if _, err := ch.QueueDelete(topic, false, false, false); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(topic, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		t.Fatal(err)
	}
	p.Refuse(false)
	select {
	case err := <-srv.err:
		if !errors.Is(err, runtime.ErrTopologyMismatch) {
			t.Fatalf("Serve = %v; want ErrTopologyMismatch", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server still tries to reconnect to a queue it cannot declare")
	}
}

// deadLetterQueue declares exchange dlx and a queue bound to it, and
// returns what is dead-lettered there.
func deadLetterQueue(t *testing.T, ch *amqp.Channel, dlx string) <-chan amqp.Delivery {
	t.Helper()
	if err := ch.ExchangeDeclare(dlx, "fanout", false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err == nil {
		err = ch.QueueBind(q.Name, "", dlx, false, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	dead, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return dead
}

// TestLateRequestsDeadLettered: a request a server takes past its
// deadline (one that waited with a consumer the broker lost, say, which
// the broker does not expire) is not run and goes where one the broker
// expired goes: to the topic's dead-letter exchange, a call or a cast, on
// a classic queue or a quorum queue.
func TestLateRequestsDeadLettered(t *testing.T) {
	for _, qt := range []runtime.QueueType{runtime.QueueClassic, runtime.QueueQuorum} {
		t.Run(string(qt), func(t *testing.T) {
			topic := newTopic(t)
			ch := rawChannel(t)
			dlx := topic + ".dead"
			dead := deadLetterQueue(t, ch, dlx)
			srv := serve(t, topic, runtime.WithQueueType(qt), runtime.WithDeadLetterExchange(dlx))
			late := amqp.Table{"amqprpc-deadline": time.Now().Add(-time.Second).UnixMilli()}
			queue, replies := replyQueue(t, ch)
			publish(t, ch, topic, amqp.Publishing{CorrelationId: "late-call", ReplyTo: queue, Headers: late,
				Body: []byte(`{"method": "add", "args": {"v1": 1, "v2": 2}}`)})
			publish(t, ch, topic, amqp.Publishing{Headers: late, Body: []byte(`{"method": "note", "args": {"id": 7}}`)})
			var got []string // in either order: the server takes them side by side
			for range 2 {
				d := receive(t, dead)
				if !strings.Contains(fmt.Sprint(d.Headers["x-death"]), "rejected") {
					t.Fatalf("dead-lettered %s (x-death %v); want it rejected", d.Body, d.Headers["x-death"])
				}
				got = append(got, string(d.Body))
			}
			if all := strings.Join(got, " "); !strings.Contains(all, `"add"`) || !strings.Contains(all, `"note"`) {
				t.Fatalf("dead-lettered %q; want the add call and the note cast", got)
			}
			select {
			case d := <-replies:
				t.Fatalf("a request past its deadline was answered: %s", d.Body)
			case <-time.After(300 * time.Millisecond):
			}
			if st := srv.Stats(); st.Expired != 2 || srv.arith.Calls.Load() != 0 || srv.fleet.Notes(7) != 0 {
				t.Fatalf("server stats %+v, %d calls, %d notes; want two expired, none run", st, srv.arith.Calls.Load(), srv.fleet.Notes(7))
			}
		})
	}
}

// TestLateRequestsDropped: a request taken past its deadline that is not
// a message of its own served at least once is dropped unrun, not
// dead-lettered: served at most once (acknowledged as taken), or in a
// batch with a request that runs (the batch's message is acknowledged).
func TestLateRequestsDropped(t *testing.T) {
	late := func() int64 { return time.Now().Add(-time.Second).UnixMilli() }
	for _, tc := range []struct {
		name string
		opts []runtime.ServerOption
		pub  func(queue string) amqp.Publishing
	}{
		{"at most once", []runtime.ServerOption{runtime.WithAckAfterReply(false)}, func(queue string) amqp.Publishing {
			return amqp.Publishing{CorrelationId: "late", ReplyTo: queue, Headers: amqp.Table{"amqprpc-deadline": late()},
				Body: []byte(`{"method": "add", "args": {"v1": 1, "v2": 2}}`)}
		}},
		{"in a batch", nil, func(queue string) amqp.Publishing {
			return amqp.Publishing{Type: "amqprpc.requests", ContentType: "application/json", ReplyTo: queue, Body: []byte(fmt.Sprintf(`[
				{"id": "late", "deadline": %d, "request": {"method": "add", "args": {"v1": 1, "v2": 2}}},
				{"id": "live", "deadline": 0, "request": {"method": "add", "args": {"v1": 2, "v2": 2}}}]`, late()))}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topic := newTopic(t)
			ch := rawChannel(t)
			dlx := topic + ".dead"
			dead := deadLetterQueue(t, ch, dlx)
			srv := serve(t, topic, append(tc.opts, runtime.WithDeadLetterExchange(dlx))...)
			queue, replies := replyQueue(t, ch)
			publish(t, ch, topic, tc.pub(queue))
			waitStats(t, srv, func(st runtime.ServerStats) bool { return st.Expired == 1 })
			for {
				select {
				case d := <-dead:
					t.Fatalf("dead-lettered %s", d.Body)
				case d := <-replies:
					if d.CorrelationId != "live" {
						t.Fatalf("reply %q %s; want none but the live request's", d.CorrelationId, d.Body)
					}
					continue
				case <-time.After(500 * time.Millisecond):
				}
				break
			}
			if n := srv.arith.Calls.Load(); n > 1 {
				t.Fatalf("%d calls ran; want the live one at most", n)
			}
		})
	}
}

// TestDeliveryLimit: on a quorum queue, the broker drops, or dead-letters,
// a request delivered more often than the delivery limit, whatever the
// servers do; the server logs each delivery's count.
func TestDeliveryLimit(t *testing.T) {
	topic := newTopic(t)
	ch := rawChannel(t)
	dlx := topic + ".dead"
	dead := deadLetterQueue(t, ch, dlx)
	p, url := proxy(t)
	srv := serveVia(t, url, topic, "main", fastReconnect, runtime.WithQueueType(runtime.QueueQuorum), runtime.WithDeliveryLimit(1), runtime.WithDeadLetterExchange(dlx))
	arith := testsvc.NewArithClient(dial(t), topic)
	go arith.Work(ctxTimeout(t, 8*time.Second), 5, time.Second)
	for loss := 1; loss <= 2; loss++ { // delivered, delivered again (count 1), then over the limit
		eventually(t, "Work runs", func() bool { return srv.arith.Calls.Load() == int64(loss) })
		p.Cut()
	}
	if d := receive(t, dead); !strings.Contains(string(d.Body), `"method":"work"`) {
		t.Fatalf("dead-lettered %s; want the Work request", d.Body)
	}
	if st := srv.Stats(); st.Quarantined != 0 {
		t.Errorf("the server quarantined %d requests; the broker was first", st.Quarantined)
	}
	if !strings.Contains(srv.logs.String(), "delivery_count=1") {
		t.Errorf("no log of the delivery count:\n%s", srv.logs)
	}
}
