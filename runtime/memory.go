package runtime

import (
	"hash/maphash"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqprpc/amqprpc/internal/wire"
)

// memory is what a server remembers of the requests it took, each in a
// bounded cache:
//
//   - the replies of the last requests it answered (WithDeduplication), by
//     id and reply path: a request delivered again is answered with the
//     reply it had, without running its method twice;
//   - the requests in flight at its lost connections (quarantine): one
//     delivered again after quarantineLosses of them is rejected instead
//     of being served;
//   - the ids of the last messages it took for good (oslo.messaging's
//     _unique_id): a message delivered twice is dropped, as oslo.messaging
//     servers do.
type memory struct {
	replies *cache[replyKey, *remembered] // nil unless WithDeduplication
	strikes *cache[uint64, strike]
	ids     *cache[string, struct{}]
	seed    maphash.Seed
}

// Bounds of a server's memory.
const (
	// dedupeMaxBytes bounds the reply bodies kept for deduplication.
	dedupeMaxBytes = 32 << 20
	// quarantineLosses is how many lost connections a request may be in
	// flight at before it is rejected when delivered again.
	quarantineLosses = 2
	// quarantineSize bounds how many requests quarantine remembers, and
	// quarantineTTL for how long: a request in flight at two losses an
	// hour apart is unlucky, not poison.
	quarantineSize = 4096
	quarantineTTL  = 10 * time.Minute
	// uniqueIDs is how many oslo.messaging message ids a server remembers
	// (oslo.messaging's servers remember 16).
	uniqueIDs = 64
)

func newMemory(dedupe int) memory {
	m := memory{
		strikes: newCache[uint64, strike](quarantineSize, quarantineTTL),
		ids:     newCache[string, struct{}](uniqueIDs, 0),
		seed:    maphash.MakeSeed(),
	}
	if dedupe > 0 {
		m.replies = newCache[replyKey, *remembered](dedupe, 0).weighed(dedupeMaxBytes, func(r *remembered) int { return len(r.reply.Body) })
	}
	return m
}

// replyKey knows a request by its id and its reply path together: two
// callers that happen to use the same id are two requests.
type replyKey struct {
	reply wire.Route
	id    string
}

// remembered is a request taken: running until done is closed, then
// answered with reply.
type remembered struct {
	key   replyKey
	done  chan struct{}
	reply amqp.Publishing
}

// answer returns the entry of request id, whose reply goes to reply; first
// says the request is new, and its entry is to be filled (remember). It
// returns nil without deduplication.
func (m *memory) answer(reply wire.Route, id string) (e *remembered, first bool) {
	if m.replies == nil {
		return nil, false
	}
	k := replyKey{reply, id}
	return m.replies.add(k, &remembered{key: k, done: make(chan struct{})})
}

// remember fills e with the reply of its request and wakes its later
// deliveries.
func (m *memory) remember(e *remembered, reply amqp.Publishing) {
	e.reply = reply
	if got, ok := m.replies.get(e.key); ok && got == e {
		m.replies.set(e.key, e) // weighed again, with its reply
	}
	close(e.done)
}

// strike is how many lost connections a request was in flight at, and the
// last of them.
type strike struct {
	losses  int
	session uint64
}

// key identifies d across deliveries: a hash of its ids and body.
func (m *memory) key(d *amqp.Delivery) uint64 {
	var h maphash.Hash
	h.SetSeed(m.seed)
	h.WriteString(d.CorrelationId)
	h.WriteByte(0)
	h.WriteString(d.MessageId)
	h.WriteByte(0)
	h.WriteString(d.ReplyTo)
	h.WriteByte(0)
	h.Write(d.Body)
	return h.Sum64()
}

// lost records that the connection of session was lost with ds in flight:
// a strike for each request, however many of its copies were in flight.
func (m *memory) lost(ds []*amqp.Delivery, session uint64) {
	for _, d := range ds {
		m.strikes.update(m.key(d), func(s strike, _ bool) strike {
			if s.session != session {
				s.losses++
				s.session = session
			}
			return s
		})
	}
}

// refused records that the broker refused the reply to d's request (a
// nack): a strike, as a lost connection is, so that a request whose reply
// the broker keeps refusing is not served again and again.
func (m *memory) refused(d *amqp.Delivery) {
	m.strikes.update(m.key(d), func(s strike, _ bool) strike {
		s.losses++
		s.session = 0 // the next lost connection strikes again
		return s
	})
}

// quarantined reports whether d, delivered again, was in flight at
// quarantineLosses lost connections, or had its reply refused as often.
func (m *memory) quarantined(d *amqp.Delivery) bool {
	s, _ := m.strikes.get(m.key(d))
	return s.losses >= quarantineLosses
}

// served forgets the strikes of d, delivered again and served at last.
func (m *memory) served(d *amqp.Delivery) {
	if m.strikes.len() > 0 {
		m.strikes.remove(m.key(d))
	}
}

// tookAlready reports whether the message of id was taken for good
// before; with record set, it records that it is now.
func (m *memory) tookAlready(id string, record bool) bool {
	if record {
		_, added := m.ids.add(id, struct{}{})
		return !added
	}
	_, ok := m.ids.get(id)
	return ok
}

// took records that the message of id was taken for good: answered.
func (m *memory) took(id string) { m.ids.add(id, struct{}{}) }
