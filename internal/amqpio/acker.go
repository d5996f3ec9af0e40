package amqpio

import (
	"sync"
	"time"
)

// Acker acknowledges the deliveries of one channel several at a time: one
// basic.ack with multiple set for the run of deliveries finished since the
// last one, which saves the broker a frame per delivery (see
// bench/RESULTS.md). Delivery tags count up from 1 per channel; Acker acks
// up to the highest tag below which every delivery has finished, as soon
// as batch of them wait, and otherwise within AckDelay: a delivery finished
// but not yet acknowledged is only delivered again if the connection is
// lost meanwhile. A delivery that finishes behind one still running is
// acknowledged alone once behind of them wait, so that a slow one cannot
// hold back many acks and starve the prefetch window.
type Acker struct {
	mu        sync.Mutex
	ch        Acknowledger
	batch     uint64
	behind    int
	next      uint64          // the lowest tag not yet finished
	finished  map[uint64]bool // tags > next that finished: true when their ack is due
	waiting   int             // entries of finished whose ack is due
	due       uint64          // the highest tag < next whose ack is due, 0 if none
	lastAcked uint64          // the tag of the last multiple ack
	timer     *time.Timer     // acks what is due after AckDelay; nil when not set
	stopped   bool
}

// AckDelay is the longest a finished delivery waits for its ack. Each ack
// costs the broker and the server work on the way of the next requests: a
// lightly loaded server that acks within 1ms, every third request or so,
// answers sequential calls 5% slower than one that acks within 10ms, every
// batch (see bench/NOTES.md). Longer does not shorten it further.
const AckDelay = 10 * time.Millisecond

// Acknowledger is the part of a Channel an Acker uses.
type Acknowledger interface {
	Ack(tag uint64, multiple bool) error
}

// NewAcker returns the acker of ch, whose consumers take at most prefetch
// deliveries each.
func NewAcker(ch Acknowledger, prefetch int) *Acker {
	return &Acker{
		ch:       ch,
		batch:    uint64(max(1, min(32, prefetch/4))),
		behind:   max(1, prefetch/2),
		next:     1,
		finished: make(map[uint64]bool),
	}
}

// Finish records that delivery tag is done. With ack set it is to be
// acknowledged; without, its owner has settled it otherwise (nack,
// reject). An error means the channel is gone, and the broker delivers
// again what it had not been told of.
func (a *Acker) Finish(tag uint64, ack bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.finished[tag] = ack
	if ack {
		a.waiting++
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
	if a.waiting >= a.behind { // finished behind a slow delivery: ack them alone
		for t, due := range a.finished {
			if due {
				if err := a.ch.Ack(t, false); err != nil { // multiple
					return err
				}
				a.finished[t] = false
			}
		}
		a.waiting = 0
	}
	switch {
	case a.due == 0:
		return nil
	case a.due-a.lastAcked >= a.batch:
		return a.ackDue()
	case a.timer == nil && !a.stopped:
		a.timer = time.AfterFunc(AckDelay, func() { a.Flush() })
	}
	return nil
}

// Flush acks what is due: once AckDelay has passed, and before a channel
// closes. An error means the channel is gone.
func (a *Acker) Flush() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.due == 0 {
		return nil
	}
	return a.ackDue()
}

// ackDue acks every delivery up to the due tag; a.mu is held.
func (a *Acker) ackDue() error {
	if a.timer != nil {
		a.timer.Stop()
		a.timer = nil
	}
	a.lastAcked, a.due = a.due, 0
	return a.ch.Ack(a.lastAcked, true) // multiple
}

// Stop cancels a pending flush, once the channel is gone.
func (a *Acker) Stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stopped = true
	if a.timer != nil {
		a.timer.Stop()
		a.timer = nil
	}
}
