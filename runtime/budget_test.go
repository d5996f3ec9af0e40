package runtime

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqprpc/amqprpc/internal/amqpio"
	"github.com/amqprpc/amqprpc/internal/wire"
)

// TestServerHoldsAtMostMaxRequestBytes: a server holds at most
// WithMaxRequestBytes of request bodies whose methods have not returned,
// whatever its prefetch count lets the broker send: the next requests wait
// on the broker, and run as the first return.
func TestServerHoldsAtMostMaxRequestBytes(t *testing.T) {
	const body, limit, n = 1 << 20, 4 << 20, 16 // bytes a request, bytes at once, requests
	topic := "test.budget." + time.Now().Format("150405.000000")
	var running, most atomic.Int32
	release := make(chan struct{})
	var done sync.WaitGroup
	done.Add(n)
	desc := &ServiceDesc{ServiceName: "Budget", Methods: []MethodDesc{{Name: "hold", Handler: func(_ any, ctx context.Context, dec func(any) error) (any, error) {
		defer done.Done()
		now := running.Add(1)
		defer running.Add(-1)
		for m := most.Load(); now > m && !most.CompareAndSwap(m, now); m = most.Load() {
		}
		<-release
		return nil, nil
	}}}}
	s := NewServer(brokerURL(), topic, WithServerName("budget"), WithPrefetch(64), WithMaxRequestBytes(limit))
	s.RegisterService(desc, struct{}{})
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	conn, err := amqp.Dial(brokerURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, _ := conn.Channel()
	defer func() {
		s.Shutdown(context.Background())
		<-served
		ch.QueueDelete(topic, false, false, false)
		ch.ExchangeDelete(wire.FanoutExchange(DefaultExchange, topic), false, false)
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := ch.QueueDeclarePassive(topic, true, false, false, false, nil); err == nil {
			break
		} else if ch, _ = conn.Channel(); time.Now().After(deadline) {
			t.Fatal("the server did not declare its queue")
		}
	}
	time.Sleep(100 * time.Millisecond) // it consumes by now
	args := fmt.Sprintf(`{"method":"hold","args":{},"pad":%q}`, strings.Repeat("x", body-40))
	for range n {
		if err := ch.Publish(DefaultExchange, topic, false, false, amqp.Publishing{Body: []byte(args)}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Second) // what the server would take, it has taken
	if m, want := most.Load(), int32(limit/body); m > want || m == 0 {
		t.Errorf("%d requests of %d bytes ran at once; WithMaxRequestBytes(%d) allows %d", m, body, limit, want)
	}
	s.mu.Lock()
	budget := s.sess.conn.(interface{ Budget() *amqpio.Budget }).Budget()
	s.mu.Unlock()
	if peak := budget.Peak(); peak > limit {
		t.Errorf("the server held %d bytes of requests at once; want at most %d", peak, limit)
	}
	close(release) // the others run as these return
	waited := make(chan struct{})
	go func() { done.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(20 * time.Second):
		t.Fatalf("%d requests of %d ran", n-int(running.Load()), n)
	}
	t.Logf("at most %d requests at once, %d bytes held at most", most.Load(), budget.Peak())
}
