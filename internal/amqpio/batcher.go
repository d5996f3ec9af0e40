package amqpio

import (
	"context"
	"errors"
)

// Batcher publishes messages of one connection, several items to one
// routing key in a message while the connection is busy: clients batch
// their calls and servers their replies, which saves the broker, and both
// ends, a message per item (see bench/RESULTS.md). It is the coalescing
// engine over items: an item sent while the batcher is idle goes out at
// once, alone, from its sender; items sent while one is being published
// queue, and the flusher publishes all that queued, one message per
// routing key.
type Batcher[T any] struct {
	coalescing[keyed[T]]
	// publish publishes items, all for key, in order, as one message or
	// several, and answers for each of them: it never fails.
	publish func(key string, items []T)
	limit   int // the most items that may queue
	group   []T // the flusher's scratch for one key's items
	one     []T // the scratch of an item sent at once; busy guards it
}

type keyed[T any] struct {
	key  string
	item T
}

// NewBatcher returns a batcher that publishes with publish once started,
// and lets at most limit items queue (0 for no bound): a sender waits
// for room beyond that.
func NewBatcher[T any](limit int, publish func(key string, items []T)) *Batcher[T] {
	b := &Batcher[T]{publish: publish, limit: limit, one: make([]T, 1)}
	b.init(b.publishAll)
	return b
}

// Start starts the flusher; the owner stops it with Stop.
func (b *Batcher[T]) Start() { b.start() }

// ErrStopped is what Send returns once the batcher is stopped.
var ErrStopped = errors.New("amqprpc: the batcher is stopped")

// Send publishes item to key at once when the batcher is idle, and
// otherwise queues it for the flusher, waiting while the queue is full
// until ctx ends. It returns an error, and publishes nothing, once the
// batcher is stopped (ErrStopped) or ctx ended: the caller then answers
// for item.
func (b *Batcher[T]) Send(ctx context.Context, key string, item T) error {
	b.mu.Lock()
	for b.limit > 0 && len(b.queue) >= b.limit && !b.stopped {
		if b.room == nil {
			b.room = make(chan struct{})
		}
		room := b.room
		b.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return ctx.Err()
		}
		b.mu.Lock()
	}
	if b.stopped {
		b.mu.Unlock()
		return ErrStopped
	}
	if b.idle() {
		b.mu.Unlock()
		b.one[0] = item
		b.publish(key, b.one)
		clear(b.one)
		b.mu.Lock()
		more := b.finished(nil)
		b.mu.Unlock()
		if more {
			b.ring()
		}
		return nil
	}
	b.queue = append(b.queue, keyed[T]{key, item})
	b.mu.Unlock()
	b.ring()
	return nil
}

// publishAll publishes batch, one key's items at a time, in order.
func (b *Batcher[T]) publishAll(batch []keyed[T]) error {
	for rest := batch; len(rest) > 0; {
		key := rest[0].key
		group, others := b.group[:0], rest[:0]
		for _, k := range rest {
			if k.key == key {
				group = append(group, k.item)
			} else {
				others = append(others, k)
			}
		}
		b.publish(key, group)
		clear(group)
		b.group, rest = group[:0], others
	}
	clear(batch)
	return nil
}

// Queued returns how many items wait for the flusher.
func (b *Batcher[T]) Queued() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}

// Drain waits until everything queued has gone out, or until Stop.
func (b *Batcher[T]) Drain() { b.drain() }

// Stop ends the flusher, once started, and returns the items still queued,
// which are not published: Stop is for a connection that is going. Calls
// after the first return nothing.
func (b *Batcher[T]) Stop() []T {
	queued := b.stop()
	left := make([]T, len(queued))
	for i, k := range queued {
		left[i] = k.item
	}
	return left
}
