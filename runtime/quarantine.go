package runtime

import (
	"hash/maphash"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"
)

// quarantine keeps a request that costs the server its connection from
// doing so again and again. Whatever closes a connection (the broker, or
// amqp091-go, for a reason no check foresaw), the requests the server had
// taken on it and not yet acknowledged go back to the queue, and come back
// to a server marked redelivered. quarantine counts, for each of those
// requests, the lost connections it was in flight at; a request delivered
// again after quarantineLosses of them is rejected without requeue (and so
// dead-lettered where its queue has a dead-letter exchange) instead of
// being served. A request is known by a hash of its body and ids. Only
// redelivered requests are looked up, and only lost connections add
// entries: nothing of this is on the way of an ordinary request.
type quarantine struct {
	seed    maphash.Seed
	mu      sync.Mutex
	strikes map[uint64]int // lost connections each request was in flight at
	order   []uint64       // the requests in the order struck, to forget the oldest
	next    int
}

// quarantineLosses is how many lost connections a request may be in
// flight at before it is rejected when delivered again.
const quarantineLosses = 2

// quarantineSize bounds how many requests quarantine remembers.
const quarantineSize = 4096

func newQuarantine() *quarantine {
	return &quarantine{seed: maphash.MakeSeed(), strikes: make(map[uint64]int), order: make([]uint64, quarantineSize)}
}

// key identifies d across deliveries.
func (q *quarantine) key(d *amqp.Delivery) uint64 {
	var h maphash.Hash
	h.SetSeed(q.seed)
	h.WriteString(d.CorrelationId)
	h.WriteByte(0)
	h.WriteString(d.MessageId)
	h.WriteByte(0)
	h.WriteString(d.ReplyTo)
	h.WriteByte(0)
	h.Write(d.Body)
	return h.Sum64()
}

// lost records that a connection was lost with ds in flight.
func (q *quarantine) lost(ds []*amqp.Delivery) {
	keys := make([]uint64, len(ds))
	for i, d := range ds {
		keys[i] = q.key(d)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, k := range keys {
		if q.strikes[k] == 0 {
			if old := q.order[q.next]; old != 0 {
				delete(q.strikes, old)
			}
			q.order[q.next] = k
			q.next = (q.next + 1) % len(q.order)
		}
		q.strikes[k]++
	}
}

// losses returns how many lost connections d was in flight at.
func (q *quarantine) losses(d *amqp.Delivery) int {
	k := q.key(d)
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.strikes[k]
}
