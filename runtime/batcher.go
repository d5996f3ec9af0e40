package runtime

import (
	goruntime "runtime"
	"sync"
	"time"
)

// batcher publishes messages of one session, several items to one routing
// key in a message while the session is busy: clients batch their calls
// (requester) and servers their replies (replier), which saves the broker,
// and both ends, a message per item (see bench/RESULTS.md). It works like
// the coalescer under the connection: an item sent while the session is
// idle goes out at once, alone, from its sender; items sent while one is
// being published queue, and one goroutine publishes all that queued, one
// message per routing key, after letting the senders that are ready to run
// queue theirs.
type batcher[T any] struct {
	// publish publishes items, all for key, in order, as one message or
	// several, and answers for each of them: it never fails.
	publish func(key string, items []T)

	mu      sync.Mutex
	queue   []keyed[T] // items not yet published
	spare   []keyed[T] // the flusher's last batch, reused
	group   []T        // the flusher's scratch for one key's items
	one     []T        // the scratch of an item sent at once; busy guards it
	busy    bool       // items are being published
	last    time.Time  // when the last publish ended
	drained *sync.Cond // broadcast whenever a publish ends, and on stop
	started bool       // the flusher runs, or ran
	stopped bool       // stop was called: nothing more is queued
	wake    chan struct{}
	done    chan struct{}
	ended   chan struct{} // closed when the flusher has returned
}

type keyed[T any] struct {
	key  string
	item T
}

// newBatcher returns a batcher that publishes with publish once started.
func newBatcher[T any](publish func(key string, items []T)) *batcher[T] {
	b := &batcher[T]{publish: publish, one: make([]T, 1), wake: make(chan struct{}, 1), done: make(chan struct{}), ended: make(chan struct{})}
	b.drained = sync.NewCond(&b.mu)
	return b
}

// start starts the flusher; its owner stops it with stop.
func (b *batcher[T]) start() {
	b.mu.Lock()
	b.started = true
	b.mu.Unlock()
	go b.flush()
}

// send publishes item to key at once when the session is idle, and
// otherwise queues it for the flusher.
func (b *batcher[T]) send(key string, item T) {
	b.mu.Lock()
	if b.stopped { // the session is gone: this publish fails, and answers for item
		b.mu.Unlock()
		b.publish(key, []T{item})
		return
	}
	if !b.busy && len(b.queue) == 0 && time.Since(b.last) > busyWindow {
		b.busy = true
		b.mu.Unlock()
		b.one[0] = item
		b.publish(key, b.one)
		clear(b.one)
		b.published()
		return
	}
	b.queue = append(b.queue, keyed[T]{key, item})
	b.mu.Unlock()
	b.ring()
}

// published records the end of a publish, and wakes the flusher if items
// queued meanwhile.
func (b *batcher[T]) published() {
	b.mu.Lock()
	b.busy = false
	b.last = time.Now()
	more := len(b.queue) > 0
	b.drained.Broadcast()
	b.mu.Unlock()
	if more {
		b.ring()
	}
}

func (b *batcher[T]) ring() {
	select {
	case b.wake <- struct{}{}:
	default: // the flusher is already due
	}
}

// flush publishes what queued, until stop.
func (b *batcher[T]) flush() {
	defer close(b.ended)
	for {
		select {
		case <-b.wake:
		case <-b.done:
			return
		}
		goruntime.Gosched() // let ready senders queue their items first
		b.mu.Lock()
		if b.busy || len(b.queue) == 0 { // the publish under way rings when done
			b.mu.Unlock()
			continue
		}
		batch := b.queue
		b.queue, b.spare = b.spare[:0], nil
		b.busy = true
		b.mu.Unlock()
		b.publishAll(batch)
		clear(batch)
		b.mu.Lock()
		b.spare = batch[:0]
		b.mu.Unlock()
		b.published()
	}
}

// publishAll publishes batch, one key's items at a time, in order.
func (b *batcher[T]) publishAll(batch []keyed[T]) {
	for len(batch) > 0 {
		key := batch[0].key
		group, rest := b.group[:0], batch[:0]
		for _, k := range batch {
			if k.key == key {
				group = append(group, k.item)
			} else {
				rest = append(rest, k)
			}
		}
		b.publish(key, group)
		clear(group)
		b.group, batch = group[:0], rest
	}
}

// drain waits until every item queued has been published, or until stop.
func (b *batcher[T]) drain() {
	b.mu.Lock()
	for (b.busy || len(b.queue) > 0) && !b.stopped {
		b.drained.Wait()
	}
	b.mu.Unlock()
}

// stop ends the flusher, once started, and returns the items still queued,
// which are not published: stop is for a session that is gone. Calls after
// the first return nothing.
func (b *batcher[T]) stop() []T {
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		return nil
	}
	b.stopped = true
	left := make([]T, len(b.queue))
	for i, k := range b.queue {
		left[i] = k.item
	}
	b.queue = nil
	b.drained.Broadcast()
	started := b.started
	b.mu.Unlock()
	close(b.done)
	if started {
		<-b.ended
	}
	return left
}
