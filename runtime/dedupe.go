package runtime

import (
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"
)

// dedupe remembers the last requests a server took and their replies, so
// that a request delivered again is answered without running its method
// twice. A request is known by its id and its reply path together: two
// callers that happen to use the same id are two requests. Its memory is
// bounded twice: it forgets the oldest request when it takes a new one
// beyond its size, and the oldest replies when those it keeps add up to
// more than dedupeMaxBytes.
type dedupe struct {
	mu      sync.Mutex
	entries map[dedupeKey]*dedupeEntry
	ring    []dedupeKey // keys in the order taken; ring[next] is the oldest
	next    int
	bytes   int // reply bodies kept
}

// dedupeMaxBytes bounds the reply bodies a server keeps for
// deduplication.
const dedupeMaxBytes = 32 << 20

type dedupeKey struct {
	reply route
	id    string
}

// dedupeEntry is a request taken: running until done is closed, then
// answered with reply.
type dedupeEntry struct {
	key   dedupeKey
	done  chan struct{}
	reply amqp.Publishing
}

func newDedupe(size int) *dedupe {
	return &dedupe{entries: make(map[dedupeKey]*dedupeEntry, size), ring: make([]dedupeKey, size)}
}

// begin records request id, whose reply goes to reply, and returns its
// entry; first is false when the request was taken before, and the entry
// is that of the first delivery.
func (dd *dedupe) begin(reply route, id string) (e *dedupeEntry, first bool) {
	k := dedupeKey{reply, id}
	dd.mu.Lock()
	defer dd.mu.Unlock()
	if e, ok := dd.entries[k]; ok {
		return e, false
	}
	dd.forget(dd.next)
	dd.ring[dd.next] = k
	dd.next = (dd.next + 1) % len(dd.ring)
	e = &dedupeEntry{key: k, done: make(chan struct{})}
	dd.entries[k] = e
	return e, true
}

// finish records the reply of the request of e and wakes its later
// deliveries; it forgets the oldest requests while the replies kept are
// over dedupeMaxBytes.
func (dd *dedupe) finish(e *dedupeEntry, reply amqp.Publishing) {
	dd.mu.Lock()
	e.reply = reply
	if dd.entries[e.key] == e {
		dd.bytes += len(reply.Body)
	}
	for i := dd.next; dd.bytes > dedupeMaxBytes; i = (i + 1) % len(dd.ring) {
		dd.forget(i)
	}
	dd.mu.Unlock()
	close(e.done)
}

// forget forgets the request in slot i of the ring, if any.
func (dd *dedupe) forget(i int) {
	old := dd.ring[i]
	if e, ok := dd.entries[old]; ok {
		dd.bytes -= len(e.reply.Body)
		delete(dd.entries, old)
	}
	dd.ring[i] = dedupeKey{}
}
