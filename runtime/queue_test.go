package runtime

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amqprpc/amqprpc/internal/faultproxy"
	"github.com/amqprpc/amqprpc/internal/wire"
	amqp "github.com/rabbitmq/amqp091-go"
)

// TestQueuedCallsKeepTheirInFlightSlots: while the connection cannot take
// more (here a stalled network), calls queue to be published; a call whose
// caller gives up keeps its in-flight slot until it leaves the queue, so
// that WithMaxInFlight bounds the queue, and the client's memory, too.
func TestQueuedCallsKeepTheirInFlightSlots(t *testing.T) {
	u, _ := url.Parse(brokerURL())
	p, err := faultproxy.New(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const slots = 4
	c, err := Dial(p.URL(brokerURL()), WithMaxInFlight(slots), WithTimeout(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p.Stall()
	big := make([]byte, 256<<10)
	deadline := time.Now().Add(1500 * time.Millisecond)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				c.Invoke(context.Background(), Request{Target: Target{Topic: "test.stalled"}, Method: "echo", Args: map[string][]byte{"b": big}}, nil)
			}
		})
	}
	most := 0
	for time.Now().Before(deadline) {
		c.mu.Lock()
		s := c.sess
		c.mu.Unlock()
		if s != nil && s.requests != nil {
			most = max(most, s.requests.Queued())
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.Close() // unblocks the publishes under way
	wg.Wait()
	if most > slots {
		t.Fatalf("%d calls queued to be published at once; WithMaxInFlight(%d) bounds them", most, slots)
	}
	t.Logf("at most %d calls queued", most)
}

// TestQueuedCallsGoAgainAfterALostConnection: calls queued to be published
// with others, and not published, when the connection is lost are sent on
// the next connection, and answered, rather than failed with
// ErrConnectionLost: only calls handed to the connection may have reached
// the broker, and only those fail.
func TestQueuedCallsGoAgainAfterALostConnection(t *testing.T) {
	topic := "test.queued." + time.Now().Format("150405.000000")
	echo := &ServiceDesc{ServiceName: "Echo", Methods: []MethodDesc{{Name: "echo", Handler: func(_ any, _ context.Context, dec func(any) error) (any, error) {
		var args struct{ S string }
		err := dec(&args)
		return len(args.S), err
	}}}}
	srv := NewServer(brokerURL(), topic, WithServerName("queued"))
	srv.RegisterService(echo, struct{}{})
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
	u, _ := url.Parse(brokerURL())
	p, err := faultproxy.New(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := Dial(p.URL(brokerURL()), WithReconnectBackoff(10*time.Millisecond, 50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	big := strings.Repeat("x", 256<<10)
	call := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		var n int
		err := c.Invoke(ctx, Request{Target: Target{Topic: topic}, Method: "echo", Args: map[string]string{"S": big}}, &n)
		if err == nil && n != len(big) {
			err = fmt.Errorf("echo of %d bytes = %d", len(big), n)
		}
		return err
	}
	for deadline := time.Now().Add(10 * time.Second); call() != nil; time.Sleep(20 * time.Millisecond) { // its reply opens the topic to batches
		if time.Now().After(deadline) {
			t.Fatal("the server does not answer")
		}
	}
	p.Stall()
	const n = 64
	errs := make(chan error, n)
	for range n {
		go func() { errs <- call() }()
	}
	// The network buffers fill; the other calls queue, or wait to be
	// written. They are counted once the count holds still for 100 ms:
	// then the batcher is stuck in a write, and takes no more from the
	// queue before the cut (counted sooner, a fresh clone's run saw 2 of
	// 46 queued calls taken between the count and the cut).
	count := func() (queued, published int) {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, p := range c.pending {
			if p.sent.Load() {
				published++
			}
		}
		return c.sess.requests.Queued(), published
	}
	time.Sleep(300 * time.Millisecond)
	queued, published := count()
	for still := time.Now().Add(3 * time.Second); time.Now().Before(still); {
		time.Sleep(100 * time.Millisecond)
		q, pub := count()
		if q == queued && pub == published {
			break
		}
		queued, published = q, pub
	}
	p.Cut()
	p.Resume()
	lost := 0
	for range n {
		switch err := <-errs; {
		case errors.Is(err, ErrConnectionLost):
			if lost == 0 {
				t.Logf("the first: %v", err)
			}
			lost++
		case err != nil:
			t.Errorf("a call: %v", err)
		}
	}
	// What the connection had taken, in its buffers and the network's,
	// may have reached the broker: those calls fail; the others go again.
	// The batch being written when the calls were counted may have been
	// taken by the time the connection went, or not; the calls queued
	// behind it were not.
	if lost > n-queued {
		t.Errorf("%d of %d calls failed with ErrConnectionLost; %d were queued, not taken by the connection", lost, n, queued)
	}
	t.Logf("%d calls taken by the connection when it was lost, %d queued, the others being written; %d failed with ErrConnectionLost, the others were answered", published, queued, lost)
}

// TestClientQueueIsBounded: while the connection cannot take more, at
// most maxQueuedCalls calls queue to be published with others; the
// others wait for room, and end at their deadline.
func TestClientQueueIsBounded(t *testing.T) {
	defer func(n int) { maxQueuedCalls = n }(maxQueuedCalls)
	maxQueuedCalls = 16
	u, _ := url.Parse(brokerURL())
	p, err := faultproxy.New(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := Dial(p.URL(brokerURL()), WithTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.batching.Store("test.bounded", true) // as a reply of its servers would say
	p.Stall()
	big := strings.Repeat("x", 64<<10)
	var wg sync.WaitGroup
	errs := make(chan error, 256)
	for range cap(errs) {
		wg.Go(func() {
			errs <- c.Invoke(context.Background(), Request{Target: Target{Topic: "test.bounded"}, Method: "echo", Args: map[string]string{"S": big}}, nil)
		})
	}
	most := 0
	for deadline := time.Now().Add(900 * time.Millisecond); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		c.mu.Lock()
		if s := c.sess; s != nil && s.requests != nil {
			most = max(most, s.requests.Queued())
		}
		c.mu.Unlock()
	}
	p.Close() // ends the writes under way
	wg.Wait()
	close(errs)
	if most > maxQueuedCalls || most < maxQueuedCalls/2 {
		t.Errorf("at most %d calls queued; want the bound, %d, reached and held", most, maxQueuedCalls)
	}
	for err := range errs {
		if err == nil {
			t.Fatal("a call succeeded with no server")
		}
	}
	t.Logf("at most %d calls queued", most)
}
