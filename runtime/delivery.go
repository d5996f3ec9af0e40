package runtime

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqprpc/amqprpc/internal/wire"
)

// What becomes of a delivery: this file says it all, and the rest of the
// server asks it.
//
// A delivery is a message that the broker delivered to one of a server's
// consumers: one request, or a batch of them. It is in one of six states,
// and changes state only in to, by these transitions, each of which tells
// the broker what it must, exactly once:
//
//	received ──taken, at least once──► running ──all its requests have an outcome──► acked     basic.ack, with others (amqpio.Acker)
//	   │                                                                        ├──► requeued  basic.nack, requeue
//	   │                                                                        └──► rejected  basic.reject
//	   ├──taken, at most once──► acked      basic.ack at once; its requests run after
//	   ├──taken while Shutdown runs──► requeued
//	   ├──quarantined, or a batch that cannot be read──► rejected
//	   └──(received or running) its channel is gone──► lost   nothing to tell: the broker delivers it again
//
// A delivery that is acked, requeued, rejected or lost stays so: at most
// once, a request found malformed or past its deadline after it was
// taken, or a batch that cannot be read, stays acked: dropped, not
// dead-lettered. A
// request's outcome is answered, retry or discard; a delivery's, once all
// its requests have one, is retry if any is retry, else answered if any is
// answered, else discard, which make it acked, requeued or rejected.
//
// What decides a request's outcome, before its method runs (before) and
// after, by what became of its reply (replied):
//
//	its reply cannot go where it asks (Unanswerable) ──────► discard, unrun
//	it is malformed, or too large (Malformed) ─────────────► answered with a failure, then discard
//	its caller's deadline has passed (Expired) ────────────► discard, unrun (alone in its delivery, at least once: dead-lettered, as one the broker expires)
//	a message this server took already (oslo's _unique_id) ► answered, unrun
//	a request this server answered already (WithDeduplication) ► its reply again, then as below
//	a stream (streamserve.go) once its server started it ───► answered: a stream runs at most once
//	  waiting for a stream's slot when the session ends ────► retry
//	otherwise it runs, and its reply:
//	  went out, confirmed where confirms are on ──► answered
//	  had nowhere to go (a cast), or no caller waits ► answered
//	  did not go out (its channel went) ───────────► retry
//	  was refused by the broker (a nack) ──────────► retry, and a strike (quarantine)
//	  was refused by its route ────────────────────► discard
//	  could not go out before its caller's deadline ► answered (Undelivered: the caller is gone)
//
// The bodies of a delivery's requests are released to the connection's
// budget (WithMaxRequestBytes) once every one of its methods has returned,
// or it is settled without running them.

// state is where a delivery is in its lifecycle.
type state uint8

const (
	received state = iota // taken from its consumer; nothing decided
	running               // its requests are served; the broker waits for its ack
	acked                 // done: the broker forgets it
	requeued              // back to its queue, for this server or another
	rejected              // dropped, or dead-lettered: it cannot be served
	lost                  // its channel went first: the broker delivers it again
)

var stateNames = [...]string{"received", "running", "acked", "requeued", "rejected", "lost"}

func (s state) String() string { return stateNames[s] }

// terminal reports whether s is a state a delivery never leaves.
func (s state) terminal() bool { return s >= acked }

// legal reports whether a delivery may go from one state to the other.
func legal(from, to state) bool {
	switch from {
	case received:
		return to != received
	case running:
		return to.terminal()
	}
	return false
}

// outcome is what becomes of one request of a delivery.
type outcome uint8

const (
	answered outcome = iota // done: its delivery may be acked
	retry                   // to be served again: its delivery is requeued
	discard                 // it cannot be served: its delivery is rejected
)

// delivery is a message from the broker, from receipt until the broker
// is told what became of it.
type delivery struct {
	sess   *serverSession
	raw    amqp.Delivery
	fanout bool // from the server's fanout queue: its replies name the server

	mu       sync.Mutex
	state    state
	left     int  // requests without an outcome
	holding  int  // requests that still need the body: their method has not returned
	retry    bool // one of its requests is to be served again
	answered bool // one of them was answered
	released bool // its body was released to the budget
	refused  bool // the broker refused a reply of one of its requests
	now      bool // acknowledged at once and alone, not with others (a stream's)
}

// receive registers raw, just taken from a consumer of sess (of its
// fanout queue when fanout is set), as a delivery in state received.
func (sess *serverSession) receive(raw amqp.Delivery, fanout bool) *delivery {
	d := &delivery{sess: sess, raw: raw, fanout: fanout}
	sess.mu.Lock()
	if sess.gone {
		d.state = lost
	} else {
		sess.live[raw.DeliveryTag] = d
	}
	sess.mu.Unlock()
	return d
}

// to moves d to next and tells the broker what that means. It reports
// false when d is in a state that does not lead there (a delivery already
// lost with its channel, say), when it does nothing, or when the broker
// could not be told, as its channel is gone.
func (d *delivery) to(next state) bool {
	d.mu.Lock()
	from := d.state
	if !legal(from, next) {
		d.mu.Unlock()
		if !from.terminal() {
			panic(fmt.Sprintf("amqprpc: a delivery cannot go from %s to %s", from, next)) // a bug of this file's
		}
		return false
	}
	d.state = next
	now := d.now
	d.mu.Unlock()
	if next.terminal() {
		d.sess.forget(d)
	}
	s, tag := d.sess.s, d.raw.DeliveryTag
	var err error
	switch {
	case next == acked && (from == received || now): // at most once: the ack goes before the method runs
		if err = d.sess.ch.Ack(tag, false); err == nil { // multiple
			err = d.sess.acker.Finish(tag, false)
		}
	case next == acked: // with others, soon (amqpio.Acker)
		err = d.sess.acker.Finish(tag, true)
	case next == requeued:
		if err = d.sess.ch.Nack(tag, false, true); err == nil { // multiple, requeue
			err = d.sess.acker.Finish(tag, false)
		}
	case next == rejected:
		if err = d.sess.ch.Reject(tag, false); err == nil { // requeue
			err = d.sess.acker.Finish(tag, false)
		}
	}
	if err != nil { // the channel is gone: the broker delivers it again
		s.throttle.warn(s.log, "amqprpc: settle request", "state", next, "correlation_id", clip(d.raw.CorrelationId), "error", err)
	}
	return err == nil
}

// take decides what becomes of d, just received, before anything of it is
// read, and reports whether to serve its requests: then the caller reports
// how many there are (serving), or that there are none it can read
// (unreadable).
func (s *Server) take(d *delivery) bool {
	if !s.admit(d) {
		d.release()
		return false
	}
	return true
}

func (s *Server) admit(d *delivery) bool {
	switch {
	case s.closing.Load(): // for another server, unserved
		d.to(requeued)
		return false
	case d.raw.Redelivered:
		s.stats.redelivered.Add(1)
		if n, ok := wire.Integer(d.raw.Headers["x-delivery-count"]); ok { // a quorum queue's
			s.throttle.info(s.log, "amqprpc: request delivered again", "delivery_count", n, "delivery_limit", s.cfg.deliveryLimit, "correlation_id", clip(d.raw.CorrelationId))
		}
		if s.cfg.ackAfterReply && s.memory.quarantined(&d.raw) {
			s.stats.quarantined.Add(1)
			s.log.Error("amqprpc: quarantining a request: it was in flight each time the connection was lost, or the broker refused its reply", "strikes", quarantineLosses,
				"correlation_id", clip(d.raw.CorrelationId), "message_id", clip(d.raw.MessageId), "reply_to", clip(d.raw.ReplyTo), "body_bytes", len(d.raw.Body))
			d.to(rejected)
			return false
		}
	}
	if !s.cfg.ackAfterReply { // at most once: acknowledged before it runs, or not run
		return d.to(acked)
	}
	return d.to(running)
}

// serving records that d's requests, n of them, are about to be served.
func (d *delivery) serving(n int) {
	d.mu.Lock()
	d.left, d.holding = n, n
	d.mu.Unlock()
}

// unreadable rejects d, a batch whose requests cannot be read.
func (d *delivery) unreadable() {
	d.release()
	d.to(rejected)
}

// letGo records that one request of d no longer needs d's body: its
// method returned, or will not run. Once none does, the body goes back to
// the budget: before any reply waits for the broker, which the
// connection's reader may hold back while the budget is spent.
func (d *delivery) letGo() {
	d.mu.Lock()
	d.holding--
	last := d.holding == 0
	d.mu.Unlock()
	if last {
		d.release()
	}
}

// release gives d's body back to its connection's budget, once.
func (d *delivery) release() {
	d.mu.Lock()
	released := d.released
	d.released = true
	d.mu.Unlock()
	if !released {
		d.sess.conn.Release(len(d.raw.Body))
	}
}

// alone makes d's ack go at once and alone, not with others': a stream's,
// before its items are asked for.
func (d *delivery) alone() {
	d.mu.Lock()
	d.now = true
	d.mu.Unlock()
}

// refusal records that the broker refused a reply to one of d's requests,
// and reports whether it is the first: a delivery earns one strike for
// its refused replies, however many of its requests' were.
func (d *delivery) refusal() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	first := !d.refused
	d.refused = true
	return first
}

// settle records the outcome of one request of d and, once all have one,
// settles d.
func (d *delivery) settle(o outcome) {
	d.mu.Lock()
	switch o {
	case answered:
		d.answered = true
	case retry:
		d.retry = true
	}
	d.left--
	last := d.left == 0
	next := rejected
	switch {
	case d.retry:
		next = requeued
	case d.answered:
		next = acked
	}
	taken := d.state == running
	d.mu.Unlock()
	if last && taken {
		d.to(next)
	}
}

// request is one request of a delivery, from its decoding until its
// outcome.
type request struct {
	d       *delivery
	in      wire.In
	failure *Error // what to answer a request that cannot run
	done    atomic.Bool
	let     bool // it let go of its delivery's body (letGo)
}

// from returns the name of the server to put in the reply to r: this
// server's, for a request sent to every server.
func (s *Server) from(r *request) string {
	if r.d.fanout {
		return s.server
	}
	return ""
}

// finish records r's outcome, once: an answered request is one whose
// message (oslo.messaging's _unique_id) this server took for good.
func (s *Server) finish(r *request, o outcome) {
	if r.done.Swap(true) {
		panic("amqprpc: a request finished twice") // a bug of this file's
	}
	r.letGo()
	if o == answered && r.in.UniqueID != "" {
		s.memory.took(r.in.UniqueID)
	}
	if o == answered && r.d.raw.Redelivered {
		s.memory.served(&r.d.raw)
	}
	r.d.settle(o)
}

// letGo records, once, that r no longer needs its delivery's body.
func (r *request) letGo() {
	if !r.let {
		r.let = true
		r.d.letGo()
	}
}

// before decides what becomes of r before its method runs, and reports
// whether to run it. When not, r has its outcome, or answer is the reply
// it gets without running (a failure, or the reply it had before), to
// send. entry, when not nil, is r's entry in the server's memory of
// replies (WithDeduplication), to fill with its reply.
func (s *Server) before(r *request) (run bool, answer *amqp.Publishing, entry *remembered) {
	in := &r.in
	if err := s.checkReply(in); err != nil {
		s.refused(in, err)
		s.finish(r, discard)
		return false, nil, nil
	}
	if r.failure != nil {
		s.stats.malformed.Add(1)
		s.throttle.warn(s.log, "amqprpc: rejecting malformed request", "correlation_id", clip(in.MsgID), "error", r.failure.Message)
		r.letGo()
		failure := s.encode(r, nil, r.failure)
		return false, &failure, nil
	}
	if !in.Deadline.IsZero() && time.Now().After(in.Deadline) {
		s.stats.expired.Add(1)
		s.log.Debug("amqprpc: dropping a request past its deadline", "correlation_id", clip(in.MsgID), "method", clip(in.Method), "deadline", in.Deadline)
		s.finish(r, discard)
		return false, nil, nil
	}
	if in.UniqueID != "" && s.memory.tookAlready(in.UniqueID, !s.cfg.ackAfterReply) {
		s.throttle.info(s.log, "amqprpc: dropping a message delivered twice", "unique_id", clip(in.UniqueID), "correlation_id", clip(in.MsgID), "method", clip(in.Method))
		s.finish(r, answered)
		return false, nil, nil
	}
	if in.MsgID == "" || in.Stream > 0 { // a stream runs at most once: nothing to remember
		return true, nil, nil
	}
	entry, first := s.memory.answer(in.Reply, in.MsgID)
	if entry == nil || first {
		return true, nil, entry
	}
	s.throttle.info(s.log, "amqprpc: request delivered again; answering with the first reply", "correlation_id", clip(in.MsgID), "method", clip(in.Method))
	select {
	case <-entry.done:
		r.letGo()
		return false, &entry.reply, nil
	case <-s.ctx.Done(): // Shutdown gave up: its connection goes
		s.finish(r, retry)
		return false, nil, nil
	}
}

// sent is what became of a reply.
type sent uint8

const (
	published    sent = iota // it went out, confirmed by the broker where confirms are on
	nowhere                  // it had nowhere to go, or no caller waits for it
	unpublished              // it did not go out: its channel went first
	nacked                   // the broker refused it (a nack, its channel open)
	routeRefused             // its route refused it: it cannot go there
	late                     // it could not go out before its caller's deadline
)

// replied records what became of the reply to r, and so r's outcome.
func (s *Server) replied(r *request, what sent) {
	o := answered
	switch what {
	case unpublished:
		o = retry
	case nacked: // again, but not forever: a strike, as for a lost connection
		if r.d.refusal() {
			s.memory.refused(&r.d.raw)
		}
		o = retry
	case routeRefused:
		s.stats.unanswerable.Add(1)
		o = discard
	case late:
		s.stats.undelivered.Add(1)
		s.throttle.warn(s.log, "amqprpc: a reply could not go out before its caller's deadline; dropping it", "correlation_id", clip(r.in.MsgID), "method", clip(r.in.Method))
	}
	if r.failure != nil { // malformed: rejected, however its failure went
		o = discard
	}
	s.finish(r, o)
}

// lostWith marks every delivery of sess not yet settled as lost with its
// channel, and returns those that were running: in flight.
func (sess *serverSession) lostWith() []*amqp.Delivery {
	sess.mu.Lock()
	sess.gone = true
	ds := make([]*delivery, 0, len(sess.live))
	for _, d := range sess.live {
		ds = append(ds, d)
	}
	sess.mu.Unlock()
	var held []*amqp.Delivery
	for _, d := range ds {
		d.mu.Lock()
		wasRunning := d.state == running
		d.mu.Unlock()
		if d.to(lost) && wasRunning {
			held = append(held, &d.raw)
		}
	}
	return held
}

// forget drops d, settled, from the deliveries of sess.
func (sess *serverSession) forget(d *delivery) {
	sess.mu.Lock()
	if sess.live[d.raw.DeliveryTag] == d {
		delete(sess.live, d.raw.DeliveryTag)
	}
	sess.mu.Unlock()
}
