package runtime

import (
	goruntime "runtime"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// replier publishes the replies of one server session to callers that
// accept their replies together with others (batch_replies): while the
// session is busy, replies that come close together are published as one
// message per caller, which saves the broker, the server and the client a
// message each (see bench/RESULTS.md). It works like the coalescer under
// the connection: a reply on an idle session goes out at once, from its
// worker; one that comes while another is being published queues, and one
// goroutine publishes all that queued, after letting the workers that are
// ready to run queue theirs. Each request is settled once its reply is
// out, so it is acknowledged after its reply, as before.
type replier struct {
	// publish publishes pub to the default exchange with routing key key
	// and reports whether it went out (and was confirmed, with reply
	// confirms); settle settles the request of a reply.
	publish func(key string, pub amqp.Publishing) bool
	settle  func(r *queuedReply, o outcome)
	encode  func(pub *amqp.Publishing, replies []batchedReply) error

	mu      sync.Mutex
	queue   []queuedReply // replies not yet published
	spare   []queuedReply // the flusher's last batch, reused
	busy    bool          // a batch or a reply is being published
	last    time.Time     // when the last publish ended
	drained *sync.Cond    // broadcast whenever a publish ends
	wake    chan struct{}
	done    chan struct{}
	ended   chan struct{} // closed when the flusher has returned
}

// queuedReply is a reply waiting to be published, with what settling its
// request needs.
type queuedReply struct {
	key   string // the caller's reply queue
	reply batchedReply
	d     *amqp.Delivery
	req   *inRequest
}

func newReplier(publish func(string, amqp.Publishing) bool, settle func(*queuedReply, outcome), encode func(*amqp.Publishing, []batchedReply) error) *replier {
	r := &replier{publish: publish, settle: settle, encode: encode,
		wake: make(chan struct{}, 1), done: make(chan struct{}), ended: make(chan struct{})}
	r.drained = sync.NewCond(&r.mu)
	go r.flush()
	return r
}

// send publishes q's reply at once when the session is idle, and
// otherwise queues it for the flusher; either way q's request is settled
// once its reply is out, or could not go out.
func (r *replier) send(q queuedReply) {
	r.mu.Lock()
	if !r.busy && len(r.queue) == 0 && time.Since(r.last) > busyWindow {
		r.busy = true
		r.mu.Unlock()
		r.publishAll([]queuedReply{q})
		r.ended1()
		return
	}
	r.queue = append(r.queue, q)
	r.mu.Unlock()
	r.ring()
}

// ended1 records the end of a publish and wakes the flusher if replies
// queued meanwhile.
func (r *replier) ended1() {
	r.mu.Lock()
	r.busy = false
	r.last = time.Now()
	more := len(r.queue) > 0
	r.drained.Broadcast()
	r.mu.Unlock()
	if more {
		r.ring()
	}
}

func (r *replier) ring() {
	select {
	case r.wake <- struct{}{}:
	default: // the flusher is already due
	}
}

// flush publishes what queued, until stop.
func (r *replier) flush() {
	defer close(r.ended)
	for {
		select {
		case <-r.wake:
		case <-r.done:
			return
		}
		goruntime.Gosched() // let ready workers queue their replies first
		r.mu.Lock()
		if r.busy || len(r.queue) == 0 { // the publish under way rings when done
			r.mu.Unlock()
			continue
		}
		batch := r.queue
		r.queue, r.spare = r.spare[:0], nil
		r.busy = true
		r.mu.Unlock()
		r.publishAll(batch)
		clear(batch)
		r.mu.Lock()
		r.spare = batch[:0]
		r.mu.Unlock()
		r.ended1()
	}
}

// publishAll publishes the replies of qs, one message per reply queue,
// and settles their requests.
func (r *replier) publishAll(qs []queuedReply) {
	var group []queuedReply
	var replies []batchedReply
	for len(qs) > 0 {
		// Take the replies to the first one's queue, in order; keep the
		// rest for the next round.
		key := qs[0].key
		group, replies = group[:0], replies[:0]
		rest := qs[:0]
		for _, q := range qs {
			if q.key == key {
				group = append(group, q)
				replies = append(replies, q.reply)
			} else {
				rest = append(rest, q)
			}
		}
		qs = rest
		var pub amqp.Publishing
		o := retry
		if r.encode(&pub, replies) == nil && r.publish(key, pub) {
			o = answered
		}
		for i := range group {
			r.settle(&group[i], o)
		}
	}
}

// drain waits until every reply queued has been published.
func (r *replier) drain() {
	r.mu.Lock()
	for r.busy || len(r.queue) > 0 {
		r.drained.Wait()
	}
	r.mu.Unlock()
}

// stop ends the flusher; replies still queued are dropped, as the session
// is gone and the broker will deliver their requests again.
func (r *replier) stop() {
	close(r.done)
	<-r.ended
}
