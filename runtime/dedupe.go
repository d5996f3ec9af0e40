package runtime

import (
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"
)

// dedupe remembers the ids of the last requests a server took and their
// replies, so that a request delivered again is answered without running
// its method twice. Its memory is bounded: it forgets the oldest id when it
// takes a new one beyond its size.
type dedupe struct {
	mu      sync.Mutex
	entries map[string]*dedupeEntry
	ring    []string // ids in the order taken; ring[next] is the oldest
	next    int
}

// dedupeEntry is a request taken: running until done is closed, then
// answered with reply.
type dedupeEntry struct {
	done  chan struct{}
	reply amqp.Publishing
}

func newDedupe(size int) *dedupe {
	return &dedupe{entries: make(map[string]*dedupeEntry, size), ring: make([]string, size)}
}

// begin records request id and returns its entry; first is false when the
// id was taken before, and the entry is that of the first delivery.
func (dd *dedupe) begin(id string) (e *dedupeEntry, first bool) {
	dd.mu.Lock()
	defer dd.mu.Unlock()
	if e, ok := dd.entries[id]; ok {
		return e, false
	}
	if old := dd.ring[dd.next]; old != "" {
		delete(dd.entries, old)
	}
	dd.ring[dd.next] = id
	dd.next = (dd.next + 1) % len(dd.ring)
	e = &dedupeEntry{done: make(chan struct{})}
	dd.entries[id] = e
	return e, true
}

// finish records the reply of the request and wakes its later deliveries.
func (e *dedupeEntry) finish(reply amqp.Publishing) {
	e.reply = reply
	close(e.done)
}
