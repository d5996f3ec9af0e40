package amqpio

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// fakePublisher records what a batcher publishes; while hold is set, the
// next publish waits for a receive on release.
type fakePublisher struct {
	mu      sync.Mutex
	batches [][]string
	keys    []string
	hold    bool
	held    chan struct{}
	release chan struct{}
}

func newFakePublisher() *fakePublisher {
	return &fakePublisher{held: make(chan struct{}), release: make(chan struct{})}
}

func (f *fakePublisher) publish(key string, items []string) {
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
	f.batches = append(f.batches, append([]string(nil), items...))
	f.keys = append(f.keys, key)
}

func TestBatcherBatchesWhileBusy(t *testing.T) {
	f := newFakePublisher()
	b := NewBatcher(0, f.publish)
	b.Start()
	defer b.Stop()

	f.hold = true
	go b.Send(context.Background(), "q1", "first") // an idle batcher: published at once, held there
	<-f.held
	for i := range 5 {
		b.Send(context.Background(), "q1", fmt.Sprint("a", i))
	}
	b.Send(context.Background(), "q2", "b0")
	b.Send(context.Background(), "q2", "b1")
	close(f.release)
	b.Drain()

	f.mu.Lock()
	defer f.mu.Unlock()
	if want := "[[first] [a0 a1 a2 a3 a4] [b0 b1]] to [q1 q1 q2]"; fmt.Sprintf("%v to %v", f.batches, f.keys) != want {
		t.Fatalf("published %v to %v; want %s: the first alone, then one message per key", f.batches, f.keys, want)
	}
}

// TestBatcherDrainEndsAtStop: a drain that waits for items that will
// never go out returns once the batcher is stopped, which returns them.
func TestBatcherDrainEndsAtStop(t *testing.T) {
	f := newFakePublisher()
	b := NewBatcher(0, f.publish)
	b.Start()
	f.hold = true
	go b.Send(context.Background(), "q1", "first")
	<-f.held
	b.Send(context.Background(), "q1", "queued")
	drained := make(chan struct{})
	go func() {
		b.Drain()
		close(drained)
	}()
	select {
	case <-drained:
		t.Fatal("drain returned with an item still queued")
	case <-time.After(50 * time.Millisecond):
	}
	if left := b.Stop(); fmt.Sprint(left) != "[queued]" {
		t.Errorf("Stop returned %v; want the queued item", left)
	}
	select {
	case <-drained:
	case <-time.After(5 * time.Second):
		t.Fatal("drain still waits after Stop")
	}
	close(f.release)
	if err := b.Send(context.Background(), "q1", "late"); !errors.Is(err, ErrStopped) {
		t.Errorf("Send after Stop = %v; want ErrStopped", err)
	}
}

// TestBatcherBoundsItsQueue: a sender waits while limit items queue, until
// the flusher takes them or its context ends.
func TestBatcherBoundsItsQueue(t *testing.T) {
	f := newFakePublisher()
	b := NewBatcher(2, f.publish)
	b.Start()
	defer b.Stop()
	f.hold = true
	go b.Send(context.Background(), "q", "first")
	<-f.held
	for _, item := range []string{"a", "b"} {
		if err := b.Send(context.Background(), "q", item); err != nil {
			t.Fatal(err)
		}
	}
	if n := b.Queued(); n != 2 {
		t.Fatalf("%d items queued; want 2", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := b.Send(ctx, "q", "c"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send to a full queue = %v; want it to wait until its deadline", err)
	}
	sent := make(chan error, 1)
	go func() { sent <- b.Send(context.Background(), "q", "d") }()
	close(f.release) // the flusher takes a and b, which makes room for d
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	b.Drain()
	f.mu.Lock()
	defer f.mu.Unlock()
	if fmt.Sprint(f.batches) != "[[first] [a b] [d]]" {
		t.Fatalf("published %v; want [[first] [a b] [d]]", f.batches)
	}
}

// TestBatcherSendAfterStopPublishesNothing: senders that come after Stop,
// many at once, publish nothing (the batcher's scratch is the flusher's
// alone, with no sender beside it): each answers for its item.
func TestBatcherSendAfterStopPublishesNothing(t *testing.T) {
	f := newFakePublisher()
	b := NewBatcher(0, f.publish)
	b.Start()
	b.Stop()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if err := b.Send(context.Background(), "q", fmt.Sprint(i)); !errors.Is(err, ErrStopped) {
				t.Errorf("Send after Stop = %v; want ErrStopped", err)
			}
		})
	}
	wg.Wait()
	if len(f.batches) != 0 {
		t.Fatalf("published %v after Stop", f.batches)
	}
}

// TestBatcherSendsDuringStop: senders racing with Stop each either queue
// their item, which is then published once or handed back by Stop, or
// learn that the batcher stopped (ErrStopped), and their item goes
// nowhere; run with -race, no sender shares the flusher's scratch.
func TestBatcherSendsDuringStop(t *testing.T) {
	f := newFakePublisher()
	b := NewBatcher(0, f.publish)
	b.Start()
	var (
		mu       sync.Mutex
		accepted = map[string]bool{}
		wg       sync.WaitGroup
	)
	for w := range 8 {
		wg.Go(func() {
			for i := range 200 {
				item := fmt.Sprint(w, "/", i)
				switch err := b.Send(context.Background(), "q", item); {
				case err == nil:
					mu.Lock()
					accepted[item] = true
					mu.Unlock()
				case !errors.Is(err, ErrStopped):
					t.Errorf("Send = %v; want nil or ErrStopped", err)
				}
			}
		})
	}
	time.Sleep(time.Millisecond)
	left := b.Stop()
	wg.Wait()

	seen := map[string]int{}
	f.mu.Lock()
	for _, batch := range f.batches {
		for _, item := range batch {
			seen[item]++
		}
	}
	f.mu.Unlock()
	for _, item := range left {
		seen[item]++
	}
	for item, n := range seen {
		if !accepted[item] || n != 1 {
			t.Errorf("item %s published or handed back %d times; accepted: %v", item, n, accepted[item])
		}
	}
	for item := range accepted {
		if seen[item] == 0 {
			t.Errorf("item %s accepted, then neither published nor handed back", item)
		}
	}
	if len(accepted) == 0 || len(accepted) == 8*200 {
		t.Logf("%d of %d items accepted: Stop came before or after every Send", len(accepted), 8*200)
	}
}
