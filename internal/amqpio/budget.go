package amqpio

import (
	"net"
	"sync"
	"time"
)

// Budget bounds the bytes of message bodies that a connection holds: the
// bodies delivered to its owner and not yet given back with Release. A
// connection's reader (FrameReader) admits each message before it reads
// the message's body: while the budget is spent, the reader waits, and so
// does everything the connection reads, until enough is released; the
// broker holds meanwhile what it would have sent, and TCP slows it down.
// A message is admitted alone whatever its size when nothing is held, so
// that no message waits forever. The owner must release what it is given
// only for messages that came through the budget's connection; what it
// does not release by the time the connection ends goes with the budget.
type Budget struct {
	mu     sync.Mutex
	cond   *sync.Cond
	max    int
	held   int
	peak   int
	closed bool
}

// NewBudget returns a budget of max bytes.
func NewBudget(max int) *Budget {
	b := &Budget{max: max}
	b.cond = sync.NewCond(&b.mu)
	return b
}

// admit waits until n more bytes fit, or nothing is held, and takes them;
// it returns how long it waited, and net.ErrClosed once the budget is
// closed.
func (b *Budget) admit(n int) (time.Duration, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var start time.Time
	for !b.closed && b.held > 0 && b.held+n > b.max {
		if start.IsZero() {
			start = time.Now()
		}
		b.cond.Wait()
	}
	if b.closed {
		return 0, net.ErrClosed
	}
	b.held += n
	b.peak = max(b.peak, b.held)
	var waited time.Duration
	if !start.IsZero() {
		waited = time.Since(start)
	}
	return waited, nil
}

// Release gives back n bytes taken by a message. A nil budget ignores it.
func (b *Budget) Release(n int) {
	if b == nil || n == 0 {
		return
	}
	b.mu.Lock()
	b.held = max(b.held-n, 0)
	b.mu.Unlock()
	b.cond.Broadcast()
}

// close ends the waits, when the connection closes.
func (b *Budget) close() {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.cond.Broadcast()
}

// Peak returns the most bytes held at once so far.
func (b *Budget) Peak() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.peak
}
