package amqpio

import (
	goruntime "runtime"
	"sync"
	"time"
)

// coalescing is the one engine under the two places where amqprpc sends
// several things as one: the connection's writes (coalescer: frames that
// share a write system call) and a session's messages (batcher: calls, or
// replies, that share a message). While the output is idle, what is sent
// goes out at once, from its sender, so that a lone call pays no goroutine
// hand-off. While it is busy, or was until less than busyWindow ago, what
// is sent queues, and one goroutine, the flusher, sends all that queued at
// once, after letting the senders that are ready to run queue theirs.
// Sending at once whenever nothing was going out was tried: under load,
// outputs then almost never overlap and nothing coalesces.
//
// The owner embeds it, calls init, start and stop; its send path takes
// mu, asks idle, and either sends at once and then calls finished, or
// appends to queue and calls ring.
type coalescing[E any] struct {
	// out sends items queued, all at once; the flusher stops at its first
	// error, which it keeps in err.
	out func(items []E) error

	mu      sync.Mutex
	queue   []E           // sent, not yet out
	spare   []E           // the flusher's last queue, reused
	busy    bool          // something is going out
	last    time.Time     // when the last output ended
	err     error         // out's first error
	stopped bool          // stop was called
	started bool          // the flusher runs, or ran
	drained *sync.Cond    // broadcast when an output ends, when the flusher takes the queue, and on stop
	room    chan struct{} // when not nil, closed when the flusher takes the queue, and on stop
	wake    chan struct{}
	quit    chan struct{} // closed by stop
	ended   chan struct{} // closed when the flusher has returned
}

// busyWindow is how recent the last output must be for the output to be
// busy, and what is sent to queue.
const busyWindow = 100 * time.Microsecond

func (e *coalescing[E]) init(out func([]E) error) {
	e.out = out
	e.drained = sync.NewCond(&e.mu)
	e.wake = make(chan struct{}, 1)
	e.quit = make(chan struct{})
	e.ended = make(chan struct{})
}

// start starts the flusher; the owner stops it with stop.
func (e *coalescing[E]) start() {
	e.mu.Lock()
	e.started = true
	e.mu.Unlock()
	go e.flush()
}

// idle reports, with mu held, whether the sender may send at once: the
// output is idle, nothing is queued, and the last output ended long enough
// ago. If so, the output is busy until the sender calls finished.
func (e *coalescing[E]) idle() bool {
	if e.busy || len(e.queue) > 0 || time.Since(e.last) <= busyWindow {
		return false
	}
	e.busy = true
	return true
}

// finished records, with mu held, the end of an output and its error,
// and reports whether more queued meanwhile: then the caller rings, once
// it has let go of mu.
func (e *coalescing[E]) finished(err error) (more bool) {
	e.busy = false
	e.last = time.Now()
	if err != nil && e.err == nil {
		e.err = err
	}
	e.drained.Broadcast()
	return len(e.queue) > 0
}

// makeRoom wakes the senders waiting for room, with mu held.
func (e *coalescing[E]) makeRoom() {
	if e.room != nil {
		close(e.room)
		e.room = nil
	}
}

// ring wakes the flusher.
func (e *coalescing[E]) ring() {
	select {
	case e.wake <- struct{}{}:
	default: // the flusher is already due
	}
}

// flush sends what queued, until stop or an error of out.
func (e *coalescing[E]) flush() {
	defer close(e.ended)
	for {
		select {
		case <-e.wake:
		case <-e.quit:
			return
		}
		// Let senders that are ready to run queue theirs first; when none
		// is, this returns at once.
		goruntime.Gosched()
		e.mu.Lock()
		if e.busy || len(e.queue) == 0 { // the output under way rings when done
			e.mu.Unlock()
			continue
		}
		items := e.queue
		e.queue, e.spare = e.spare[:0], nil
		e.busy = true
		e.drained.Broadcast()
		e.makeRoom()
		e.mu.Unlock()
		err := e.out(items)
		e.mu.Lock()
		e.spare = items[:0]
		more := e.finished(err)
		e.mu.Unlock()
		if err != nil {
			return
		}
		if more {
			e.ring()
		}
	}
}

// drain waits until everything queued has gone out, or until stop or an
// error.
func (e *coalescing[E]) drain() {
	e.mu.Lock()
	for (e.busy || len(e.queue) > 0) && !e.stopped && e.err == nil {
		e.drained.Wait()
	}
	e.mu.Unlock()
}

// stop ends the flusher, once started, and returns what was still
// queued, which does not go out. Calls after the first return nothing.
func (e *coalescing[E]) stop() []E {
	e.mu.Lock()
	if e.stopped {
		e.mu.Unlock()
		return nil
	}
	e.stopped = true
	left := e.queue
	e.queue = nil
	e.drained.Broadcast()
	e.makeRoom()
	started := e.started
	e.mu.Unlock()
	close(e.quit)
	if started {
		<-e.ended
	}
	return left
}
