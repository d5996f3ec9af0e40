package runtime

import (
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// work handles the deliveries of pool p until there are no more. Each
// queue has a worker from the start; more start on demand: when a worker
// takes a delivery and no other of its queue is idle, it starts another,
// up to the prefetch count in all, so that a lightly loaded server keeps a
// few warm workers rather than cycling through many. A worker waits on one
// queue, not in a select over the three: a lone call is answered 1% sooner
// (bench/NOTES.md).
func (s *Server) work(sess *serverSession, p *pool) {
	defer s.handlers.Done()
	for {
		p.idle.Add(1)
		d, ok := <-p.deliveries
		idle := p.idle.Add(-1)
		if !ok {
			return
		}
		if idle == 0 {
			if sess.workers.Add(1) <= int32(s.cfg.prefetch) {
				s.handlers.Add(1)
				go s.work(sess, p)
			} else {
				sess.workers.Add(-1)
			}
		}
		if s.closing.Load() { // for another server, unserved
			s.requeue(sess, &d)
			continue
		}
		if d.Redelivered {
			s.stats.redelivered.Add(1)
		}
		if !s.take(sess, &d) {
			continue
		}
		s.handle(sess, &d, p.fanout)
	}
}

// take takes delivery d from the broker, and reports whether to serve it.
// Without WithAckAfterReply it is acknowledged at once; with, it is
// tracked until it is, and quarantined when it comes back after too many
// lost connections.
func (s *Server) take(sess *serverSession, d *amqp.Delivery) bool {
	if !s.cfg.ackAfterReply {
		if err := sess.acker.finish(d.DeliveryTag, true); err != nil {
			s.throttle.warn(s.log, "amqprpc: acknowledge request", "error", err)
		}
		return true
	}
	if d.Redelivered {
		if n, ok := integer(d.Headers["x-delivery-count"]); ok { // a quorum queue's
			s.throttle.info(s.log, "amqprpc: request delivered again", "delivery_count", n, "delivery_limit", s.cfg.deliveryLimit, "correlation_id", clip(d.CorrelationId))
		}
		if n := s.suspects.losses(d); n >= quarantineLosses {
			s.stats.quarantined.Add(1)
			s.log.Error("amqprpc: quarantining a request: it was in flight each time the connection was lost", "losses", n,
				"correlation_id", clip(d.CorrelationId), "message_id", clip(d.MessageId), "reply_to", clip(d.ReplyTo), "body_bytes", len(d.Body))
			s.settle(sess, newTaken(d, 1), nil, discard)
			return false
		}
	}
	sess.acker.track(d)
	return true
}

// requeue gives d back to the broker unserved.
func (s *Server) requeue(sess *serverSession, d *amqp.Delivery) {
	err := d.Nack(false, true) // multiple, requeue
	if err == nil {
		err = sess.acker.finish(d.DeliveryTag, false)
	}
	if err != nil { // the channel is gone: the broker will deliver it again
		s.throttle.warn(s.log, "amqprpc: requeue request", "error", err)
	}
}

// handle serves the request, or the batch of requests, of delivery d.
func (s *Server) handle(sess *serverSession, d *amqp.Delivery, fanout bool) {
	from := ""
	if fanout {
		from = s.server
	}
	if s.proto.isBatch(d) {
		var batch []batchedRequest
		err := fmt.Errorf("batch of %d bytes is larger than the server's limit of %d", len(d.Body), s.cfg.maxBody)
		if len(d.Body) <= s.cfg.maxBody {
			batch, err = s.proto.splitRequests(d)
		}
		if err != nil { // nothing to answer each caller by: unanswered
			s.stats.malformed.Add(1)
			s.throttle.warn(s.log, "amqprpc: rejecting malformed batch of requests", "error", err)
			s.settle(sess, newTaken(d, 1), nil, discard)
			return
		}
		s.serveBatch(sess, d, batch, from)
		return
	}
	var req inRequest
	s.serve(sess, newTaken(d, 1), &req, s.decode(d, &req), from)
}

// serveBatch serves the requests of batch, from delivery d. The requests
// beyond the first run in goroutines of their own while the server's
// prefetch count allows, and otherwise one after the other; the delivery
// is settled once all have been.
func (s *Server) serveBatch(sess *serverSession, d *amqp.Delivery, batch []batchedRequest, from string) {
	if len(batch) == 0 {
		s.settle(sess, newTaken(d, 1), nil, answered)
		return
	}
	s.stats.batches.Add(1)
	s.stats.batched.Add(uint64(len(batch)))
	t := newTaken(d, len(batch))
	for i := range batch {
		req := new(inRequest)
		var failure *Error
		if err := s.proto.decodeBatched(d, &batch[i], req); err != nil {
			failure = &Error{Code: CodeMalformed, Message: clipMessage(err.Error())}
		}
		last := i == len(batch)-1
		if !last && sess.extra.Add(1) <= int32(s.cfg.prefetch) {
			s.handlers.Add(1)
			go func() {
				defer s.handlers.Done()
				defer sess.extra.Add(-1)
				s.serve(sess, t, req, failure, from)
			}()
			continue
		}
		if !last {
			sess.extra.Add(-1)
		}
		s.serve(sess, t, req, failure, from)
	}
}

// serve answers one request, decoded into req, and then settles it. A
// request that is malformed or too large (failure) is answered where it
// says how, and rejected without requeueing, so that it can neither stop
// the server nor loop. A request whose caller's deadline has passed is
// dropped unrun. A reply to a request sent to every server (fanout) names
// this server (from).
func (s *Server) serve(sess *serverSession, t *taken, req *inRequest, failure *Error, from string) {
	if err := s.checkReply(req); err != nil {
		s.unanswerable(sess, t, req, err)
		return
	}
	if failure != nil {
		s.stats.malformed.Add(1)
		s.throttle.warn(s.log, "amqprpc: rejecting malformed request", "correlation_id", clip(req.msgID), "error", failure.Message)
		s.reply(sess, req, s.encode(req, from, nil, failure))
		s.settle(sess, t, req, discard)
		return
	}
	if !req.deadline.IsZero() && time.Now().After(req.deadline) {
		s.stats.expired.Add(1)
		s.log.Debug("amqprpc: dropping a request past its deadline", "correlation_id", req.msgID, "method", clip(req.method), "deadline", req.deadline)
		s.settle(sess, t, req, answered)
		return
	}

	var entry *dedupeEntry
	if s.dedupe != nil && req.msgID != "" {
		var first bool
		if entry, first = s.dedupe.begin(req.reply, req.msgID); !first {
			s.throttle.info(s.log, "amqprpc: request delivered again; answering with the first reply", "correlation_id", req.msgID, "method", req.method)
			select {
			case <-entry.done:
				s.settle(sess, t, req, s.reply(sess, req, entry.reply))
			case <-s.ctx.Done():
			}
			return
		}
	}
	if req.uniqueID != "" && s.seen.repeats(req.uniqueID) {
		s.throttle.info(s.log, "amqprpc: dropping a message delivered twice", "unique_id", clip(req.uniqueID), "correlation_id", clip(req.msgID), "method", clip(req.method))
		s.settle(sess, t, req, answered)
		return
	}
	stopBeats := s.heartbeats(sess, req)
	result, failure := s.dispatch(s.ctx, req)
	stopBeats()
	if failure != nil && !req.reply.ok() {
		s.throttle.warn(s.log, "amqprpc: request failed and names no reply path", "correlation_id", req.msgID, "method", clip(req.method), "error", failure)
	}
	pub := s.encode(req, from, result, failure)
	if entry != nil {
		s.dedupe.finish(entry, pub)
	}
	if req.batch && from == "" && req.reply.batchable() {
		sess.replier.send(req.reply.key, queuedReply{reply: batchedReply{msgID: req.msgID, body: pub.Body}, t: t, req: req})
		return
	}
	s.settle(sess, t, req, s.reply(sess, req, pub))
}

// heartbeats starts sending heartbeats to the caller of req, when it
// asked for them, until the returned function is called; it returns once
// the last heartbeat is out.
func (s *Server) heartbeats(sess *serverSession, req *inRequest) (stop func()) {
	every := heartbeatInterval(req.heartbeat)
	if every <= 0 || !req.reply.ok() {
		return func() {}
	}
	var beat amqp.Publishing
	if err := s.proto.encodeHeartbeat(&beat, req.msgID); err != nil {
		return func() {}
	}
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				s.reply(sess, req, beat)
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

// decode decodes a delivery, or returns the error to reply with.
func (s *Server) decode(d *amqp.Delivery, req *inRequest) *Error {
	if len(d.Body) > s.cfg.maxBody {
		head := *d
		head.Body = nil
		s.proto.decodeRequest(&head, req) // for the reply path
		return &Error{Code: CodeResourceExhausted, Message: fmt.Sprintf("request body of %d bytes is larger than the server's limit of %d", len(d.Body), s.cfg.maxBody)}
	}
	if err := s.proto.decodeRequest(d, req); err != nil {
		return &Error{Code: CodeMalformed, Message: clipMessage(err.Error())}
	}
	return nil
}

// encode makes the reply to req; from, when set, names this server in it.
func (s *Server) encode(req *inRequest, from string, result any, failure *Error) amqp.Publishing {
	return encodeReply(s.proto, &s.services, req, from, result, failure)
}
