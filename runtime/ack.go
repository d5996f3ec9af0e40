package runtime

import (
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// acker acknowledges the requests of one server channel several at a time:
// one basic.ack with multiple set for the run of requests finished since
// the last one, which saves the broker a frame per request (see
// bench/RESULTS.md). Delivery tags count up from 1 per channel; acker acks
// up to the highest tag below which every request has finished, as soon as
// batch of them wait, and otherwise within ackDelay: acks are not on the
// way of any reply, and a request finished but not yet acknowledged is
// only delivered again if the connection is lost meanwhile, which
// at-least-once serving allows. A request that finishes behind one still
// running is acknowledged alone once behind of them wait, so that a slow
// request cannot hold back many acks and starve the prefetch window.
type acker struct {
	mu        sync.Mutex
	ch        acknowledger
	batch     uint64
	behind    int
	next      uint64          // the lowest tag not yet finished
	finished  map[uint64]bool // tags > next that finished: true when their ack is due
	waiting   int             // entries of finished whose ack is due
	due       uint64          // the highest tag < next whose ack is due, 0 if none
	lastAcked uint64          // the tag of the last multiple ack
	timer     *time.Timer     // acks what is due after ackDelay; nil when not set
	// held is the deliveries taken and not yet acknowledged, nacked or
	// rejected, when tracked: what the broker delivers again if the
	// connection is lost now.
	held map[uint64]*amqp.Delivery
}

// ackDelay is the longest a finished request waits for its ack. Each ack
// costs the broker and the server work on the way of the next requests: a
// lightly loaded server that acks within 1ms, every third request or so,
// answers sequential calls 5% slower than one that acks within 10ms, every
// batch (see bench/NOTES.md). Longer does not shorten it further.
const ackDelay = 10 * time.Millisecond

// acknowledger is the part of *amqp.Channel an acker uses.
type acknowledger interface {
	Ack(tag uint64, multiple bool) error
}

func newAcker(ch acknowledger, prefetch int) *acker {
	return &acker{
		ch:       ch,
		batch:    uint64(max(1, min(32, prefetch/4))),
		behind:   max(1, prefetch/2),
		next:     1,
		finished: make(map[uint64]bool),
		held:     make(map[uint64]*amqp.Delivery),
	}
}

// track records d as taken, until it is acknowledged or settled.
func (a *acker) track(d *amqp.Delivery) {
	a.mu.Lock()
	a.held[d.DeliveryTag] = d
	a.mu.Unlock()
}

// unacked returns the deliveries tracked and not yet acknowledged or
// settled otherwise.
func (a *acker) unacked() []*amqp.Delivery {
	a.mu.Lock()
	defer a.mu.Unlock()
	ds := make([]*amqp.Delivery, 0, len(a.held))
	for _, d := range a.held {
		ds = append(ds, d)
	}
	return ds
}

// finish records that request tag is done. With ack set it is to be
// acknowledged; without, the caller has settled it itself (nack, reject).
func (a *acker) finish(tag uint64, ack bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.finished[tag] = ack
	if ack {
		a.waiting++
	} else {
		delete(a.held, tag)
	}
	for {
		due, ok := a.finished[a.next]
		if !ok {
			break
		}
		if due {
			a.due = a.next
			a.waiting--
		}
		delete(a.finished, a.next)
		a.next++
	}
	if a.waiting >= a.behind { // finished behind a slow request: ack them alone
		for t, due := range a.finished {
			if due {
				if err := a.ch.Ack(t, false); err != nil { // multiple
					return err
				}
				a.finished[t] = false
				delete(a.held, t)
			}
		}
		a.waiting = 0
	}
	switch {
	case a.due == 0:
		return nil
	case a.due-a.lastAcked >= a.batch:
		return a.ackDue()
	case a.timer == nil:
		a.timer = time.AfterFunc(ackDelay, a.flush)
	}
	return nil
}

// flush acks what is due: once ackDelay has passed, and when the server
// shuts down. An error means the channel is gone, and the broker will
// deliver its requests again.
func (a *acker) flush() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.timer = nil
	if a.due != 0 {
		a.ackDue()
	}
}

// ackDue acks every request up to the due tag; a.mu is held.
func (a *acker) ackDue() error {
	if a.timer != nil {
		a.timer.Stop()
		a.timer = nil
	}
	for t := a.lastAcked + 1; t <= a.due; t++ {
		delete(a.held, t)
	}
	a.lastAcked, a.due = a.due, 0
	return a.ch.Ack(a.lastAcked, true) // multiple
}

// stop cancels a pending flush, when the channel is gone.
func (a *acker) stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.timer != nil {
		a.timer.Stop()
		a.timer = nil
	}
}
