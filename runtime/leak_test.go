package runtime

import (
	"context"

	"os"
	goruntime "runtime"
	"sync"
	"testing"
	"time"

	"github.com/amqprpc/amqprpc/internal/wire"
	amqp "github.com/rabbitmq/amqp091-go"
)

func brokerURL() string {
	if u := os.Getenv("AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

// TestNoPerCallLeaks makes thousands of calls, many at once, and checks
// that nothing per call outlives it: no goroutine, no pending entry, no
// memory that grows with the number of calls (timers included).
func TestNoPerCallLeaks(t *testing.T) {
	topic := "test.leaks." + time.Now().Format("150405.000000")
	srv := NewServer(brokerURL(), topic, WithServerName("leaks"))
	srv.RegisterService(benchDesc, struct{}{})
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	defer func() {
		srv.Shutdown(context.Background())
		<-served
		if conn, err := amqp.Dial(brokerURL()); err == nil {
			if ch, err := conn.Channel(); err == nil {
				ch.QueueDelete(topic, false, false, false)
				ch.ExchangeDelete(wire.FanoutExchange(DefaultExchange, topic), false, false)
			}
			conn.Close()
		}
	}()
	c, err := Dial(brokerURL())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	call := func(i int) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var sum int
		err := c.Invoke(ctx, Request{Target: Target{Topic: topic}, Service: benchDesc, Method: "add", Args: &benchArgs{i, 1}}, &sum)
		if err == nil && sum != i+1 {
			t.Errorf("add(%d, 1) = %d", i, sum)
		}
		return err
	}
	for deadline := time.Now().Add(10 * time.Second); call(0) != nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the server does not answer")
		}
	}

	round := func(n int) {
		var wg sync.WaitGroup
		for w := range 64 {
			wg.Go(func() {
				for i := w; i < n; i += 64 {
					if err := call(i); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
	// measure returns the goroutines other than the server's workers and
	// the helpers of its batches, which start on demand up to the prefetch
	// count, and the live heap.
	measure := func() (goroutines int, heap uint64) {
		time.Sleep(50 * time.Millisecond) // let the acker's last flush run
		goruntime.GC()
		var m goruntime.MemStats
		goruntime.ReadMemStats(&m)
		srv.mu.Lock()
		sess := srv.sess
		srv.mu.Unlock()
		workers := 0
		sess.subMu.Lock()
		for _, c := range sess.consumers {
			n := int(c.sub.workers.Load())
			if n > DefaultPrefetch {
				t.Errorf("%d workers of queue %s; the prefetch count, %d, bounds them", n, c.queue.Name, DefaultPrefetch)
			}
			workers += n
		}
		sess.subMu.Unlock()
		helpers := int(sess.helped.Load())
		if helpers > DefaultPrefetch {
			t.Errorf("%d helpers of batches; the prefetch count, %d, bounds them", helpers, DefaultPrefetch)
		}
		return goruntime.NumGoroutine() - workers - helpers, m.HeapAlloc
	}
	round(2000) // warm up: buffers, maps, workers at their working size
	g0, _ := measure()
	round(10000)
	g1, h1 := measure()
	round(10000)
	g2, h2 := measure()

	if g1 > g0 {
		t.Errorf("%d goroutines after 10,000 calls, %d before", g1, g0)
	}
	if g2 > g1 {
		t.Errorf("%d goroutines after another 10,000 calls, %d before", g2, g1)
	}
	c.mu.Lock()
	pending := len(c.pending)
	c.mu.Unlock()
	if pending != 0 {
		t.Errorf("%d calls still pending after they all ended", pending)
	}
	if grown := int64(h2) - int64(h1); grown > 1<<20 {
		t.Errorf("the heap grew by %d bytes over 10,000 calls: something per call is kept", grown)
	}
	t.Logf("goroutines %d -> %d -> %d, heap %d KiB -> %d KiB", g0, g1, g2, h1>>10, h2>>10)
}
