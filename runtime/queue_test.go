package runtime

import (
	"context"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/amqprpc/amqprpc/internal/faultproxy"
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
