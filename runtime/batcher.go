package runtime

// batcher publishes messages of one session, several items to one routing
// key in a message while the session is busy: clients batch their calls
// (requester) and servers their replies (replier), which saves the broker,
// and both ends, a message per item (see bench/RESULTS.md). It is the
// coalescing engine over items: an item sent while the session is idle
// goes out at once, alone, from its sender; items sent while one is being
// published queue, and the flusher publishes all that queued, one message
// per routing key.
type batcher[T any] struct {
	coalescing[keyed[T]]
	// publish publishes items, all for key, in order, as one message or
	// several, and answers for each of them: it never fails.
	publish func(key string, items []T)
	group   []T // the flusher's scratch for one key's items
	one     []T // the scratch of an item sent at once; busy guards it
}

type keyed[T any] struct {
	key  string
	item T
}

// newBatcher returns a batcher that publishes with publish once started.
func newBatcher[T any](publish func(key string, items []T)) *batcher[T] {
	b := &batcher[T]{publish: publish, one: make([]T, 1)}
	b.init(b.publishAll)
	return b
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
		return
	}
	b.queue = append(b.queue, keyed[T]{key, item})
	b.mu.Unlock()
	b.ring()
}

// publishAll publishes batch, one key's items at a time, in order.
func (b *batcher[T]) publishAll(batch []keyed[T]) error {
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

// stop ends the flusher, once started, and returns the items still queued,
// which are not published: stop is for a session that is gone. Calls after
// the first return nothing.
func (b *batcher[T]) stop() []T {
	queued := b.coalescing.stop()
	left := make([]T, len(queued))
	for i, k := range queued {
		left[i] = k.item
	}
	return left
}
