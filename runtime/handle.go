package runtime

import (
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqprpc/amqprpc/internal/wire"
)

// work handles the deliveries of sub until there are no more. Each
// subscription has a worker from the start; more start on demand: when a
// worker takes a delivery and no other of its subscription is idle, it
// starts another, up to the prefetch count in all, so that a lightly
// loaded server keeps a few warm workers rather than cycling through many.
// A worker waits on one queue, not in a select over the three: a lone call
// is answered 1% sooner (bench/NOTES.md). A subscription whose consumer
// ends (the broker cancelled it) loses its workers, and the one that takes
// its place starts with one.
func (s *Server) work(sess *serverSession, sub *subscription) {
	defer s.handlers.Done()
	defer sub.workers.Add(-1)
	for {
		sub.idle.Add(1)
		raw, ok := <-sub.deliveries
		idle := sub.idle.Add(-1)
		if !ok {
			return
		}
		if idle == 0 {
			sess.grow(sub)
		}
		s.handle(sess.receive(raw, sub.c.fanout))
	}
}

// handle serves the request, or the batch of requests, of delivery d, if
// it is to be served (take).
func (s *Server) handle(d *delivery) {
	if !s.take(d) {
		return
	}
	if s.proto.Batches != nil && s.proto.Batches.IsBatch(&d.raw) {
		s.serveBatch(d)
		return
	}
	r := &request{d: d}
	r.failure = s.decode(&d.raw, &r.in)
	r.in.User = d.raw.UserId
	d.serving(1)
	s.serve(r)
}

// serveBatch serves the requests of batch d. The requests but the last
// run beside the worker, in helpers (help), while the server's prefetch
// count allows; the rest run in the worker one after the other, their
// methods all first and then their replies: a reply may wait for the broker's confirm, which
// the connection's reader holds back while the delivery's body is
// counted against its budget (WithMaxRequestBytes), and the body is
// released once every method returned.
func (s *Server) serveBatch(d *delivery) {
	var batch []wire.BatchedRequest
	err := fmt.Errorf("batch of %d bytes is larger than the server's limit of %d", len(d.raw.Body), s.cfg.maxBody)
	if len(d.raw.Body) <= s.cfg.maxBody {
		batch, err = s.proto.Batches.SplitRequests(&d.raw)
	}
	if err != nil { // nothing to answer each caller by: unanswered
		s.stats.malformed.Add(1)
		s.throttle.warn(s.log, "amqprpc: rejecting malformed batch of requests", "error", err)
		d.unreadable()
		return
	}
	if len(batch) == 0 {
		d.serving(1)
		s.finish(&request{d: d}, answered)
		return
	}
	s.stats.batches.Add(1)
	s.stats.batched.Add(uint64(len(batch)))
	d.serving(len(batch))
	sess := d.sess
	var inline []*ran // run here, one after the other: answered after
	for i := range batch {
		r := &request{d: d}
		if err := s.proto.Batches.DecodeBatched(&d.raw, &batch[i], &r.in); err != nil {
			r.failure = &Error{Code: CodeMalformed, Message: wire.ClipMessage(err.Error())}
		}
		r.in.User = d.raw.UserId // the batch's publisher's, checked by the broker
		if i < len(batch)-1 && sess.extra.Add(1) <= int32(s.cfg.prefetch) {
			sess.help(r)
			continue
		}
		if i < len(batch)-1 {
			sess.extra.Add(-1)
		}
		if x := s.runMethod(r); x != nil {
			inline = append(inline, x)
		}
	}
	for _, x := range inline {
		s.reply(x)
	}
}

// help serves r, a request of a batch beside its worker, in a helper of
// sess: one that waits for work, or a new one. A helper lives as long as
// its session, up to the prefetch count of them (as the workers do), and
// ends with it or at Shutdown (s.quit, closed before the session's
// shutdown waits for its handlers), so that the stack it grew serves the
// next request (the collector shrinks it only when mostly unused): a
// goroutine for each request spent a fifth of the server's CPU growing
// stacks (bench/NOTES.md, The server at 64 in flight).
func (sess *serverSession) help(r *request) {
	select {
	case sess.helpers <- r:
		return
	default:
	}
	s := sess.s
	s.handlers.Add(1)
	if sess.helped.Add(1) > int32(s.cfg.prefetch) { // the helpers are busy: one for r alone
		sess.helped.Add(-1)
		go func() {
			defer s.handlers.Done()
			s.serve(r)
			sess.extra.Add(-1)
		}()
		return
	}
	go sess.helper(r)
}

// helper serves r, then the requests handed to it, until sess ends or
// the server shuts down.
func (sess *serverSession) helper(r *request) {
	s := sess.s
	defer s.handlers.Done()
	defer sess.helped.Add(-1)
	for {
		s.serve(r)
		sess.extra.Add(-1)
		select {
		case r = <-sess.helpers:
		case <-sess.done:
			return
		case <-s.quit:
			return
		}
	}
}

// serve serves r: it runs its method, unless before decides otherwise,
// and sends its reply.
func (s *Server) serve(r *request) {
	if x := s.runMethod(r); x != nil {
		s.reply(x)
	}
}

// ran is a request whose method returned, and its reply, to send.
type ran struct {
	r     *request
	pub   amqp.Publishing
	entry *remembered // its entry in the memory of replies, if any
}

// runMethod runs r's method, unless before decides otherwise, and
// returns its reply; or the reply before gives it without running; or nil
// when r has its outcome already.
func (s *Server) runMethod(r *request) *ran {
	run, answer, entry := s.before(r)
	switch {
	case answer != nil:
		return &ran{r: r, pub: *answer}
	case !run:
		return nil
	}
	if r.in.Stream > 0 {
		return s.startStream(r)
	}
	stopBeats := s.heartbeats(r)
	result, failure := s.dispatch(s.ctx, &r.in)
	r.letGo()
	stopBeats()
	if failure != nil && !r.in.Reply.OK() {
		s.throttle.warn(s.log, "amqprpc: request failed and names no reply path", "correlation_id", clip(r.in.MsgID), "method", clip(r.in.Method), "error", failure)
	}
	return &ran{r: r, pub: s.encode(r, result, failure), entry: entry}
}

// reply sends the reply of x, remembered first when it is to be.
func (s *Server) reply(x *ran) {
	if x.entry != nil {
		s.memory.remember(x.entry, x.pub)
	}
	s.send(x.r, x.pub)
}

// heartbeats starts sending heartbeats to the caller of r, when it asked
// for them and the protocol has them, until the returned function is
// called; it returns once the last heartbeat is out.
func (s *Server) heartbeats(r *request) (stop func()) {
	every := heartbeatInterval(r.in.Heartbeat)
	route := r.in.Reply
	if every <= 0 || s.proto.Heartbeats == nil || !route.OK() || route.Declare || route.Direct {
		return func() {}
	}
	var beat amqp.Publishing
	if err := s.proto.Heartbeats.EncodeHeartbeat(&beat, r.in.MsgID); err != nil {
		return func() {}
	}
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() { // owned by the returned function
		defer close(stopped)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-tick.C: // not confirmed: a heartbeat waits for nothing
				r.d.sess.ch.Publish(s.ctx, "", route.Key, false, false, beat) // mandatory, immediate
			case <-done:
				return
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
	}
}

// heartbeatInterval is how often a server sends heartbeats to a caller
// that asked for them every timeout: half of it, in whole seconds, and
// none below a second, as oslo.messaging servers do.
func heartbeatInterval(timeout time.Duration) time.Duration {
	return (timeout / time.Second / 2) * time.Second
}

// decode decodes a delivery, or returns the failure to answer with.
func (s *Server) decode(d *amqp.Delivery, in *wire.In) *Error {
	if len(d.Body) > s.cfg.maxBody {
		head := *d
		head.Body = nil
		s.proto.DecodeRequest(&head, in) // for the reply path
		return &Error{Code: CodeResourceExhausted, Message: fmt.Sprintf("request body of %d bytes is larger than the server's limit of %d", len(d.Body), s.cfg.maxBody)}
	}
	if err := s.proto.DecodeRequest(d, in); err != nil {
		return &Error{Code: CodeMalformed, Message: wire.ClipMessage(err.Error())}
	}
	return nil
}

// encode makes the reply to r, carrying result or failure.
func (s *Server) encode(r *request, result any, failure *Error) amqp.Publishing {
	return encodeReply(s.proto, &s.services, s.cfg.oslo, &r.in, s.from(r), result, failure)
}
