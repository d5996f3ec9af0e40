package runtime

import (
	"errors"
	"sync/atomic"

	amqp "github.com/rabbitmq/amqp091-go"
)

// taken is a delivery being served: one request, or a batch of them.
type taken struct {
	d        *amqp.Delivery
	left     atomic.Int32 // requests not yet settled
	answered atomic.Bool  // one of them was answered
	retry    atomic.Bool  // one of them is to be served again
}

func newTaken(d *amqp.Delivery, requests int) *taken {
	t := &taken{d: d}
	t.left.Store(int32(requests))
	return t
}

// outcome is what becomes of a request taken from the broker.
type outcome int

const (
	answered outcome = iota // acknowledged: it is done
	retry                   // requeued, for this or another server
	discard                 // rejected without requeue: it cannot be served
)

// answeredIf is answered when the reply went out, and retry otherwise.
func answeredIf(replied bool) outcome {
	if replied {
		return answered
	}
	return retry
}

// settle records the outcome of one request of t and, once every request
// of t has one, tells the broker what becomes of t's delivery: an ack
// through the acker, a nack or a rejection at once. A batch goes back to
// the queue if any of its requests is to be served again, and is rejected
// only if all were. req is nil for a request not even decoded. Without
// WithAckAfterReply, the broker has forgotten the delivery already.
func (s *Server) settle(sess *serverSession, t *taken, req *inRequest, o outcome) {
	if !s.cfg.ackAfterReply { // acknowledged when taken
		return
	}
	switch o {
	case answered:
		t.answered.Store(true)
	case retry:
		t.retry.Store(true)
	}
	if t.left.Add(-1) > 0 {
		return
	}
	switch {
	case t.retry.Load():
		o = retry
	case t.answered.Load():
		o = answered
	default:
		o = discard
	}
	if req == nil {
		req = &inRequest{}
	}
	var err error
	switch o {
	case retry:
		err = t.d.Nack(false, true) // multiple, requeue
	case discard:
		err = t.d.Reject(false) // requeue
	}
	if err == nil {
		err = sess.acker.finish(t.d.DeliveryTag, o == answered)
	}
	if err != nil { // the channel is gone: the broker will deliver it again
		s.throttle.warn(s.log, "amqprpc: settle request", "correlation_id", req.msgID, "method", req.method, "error", err)
	}
}

// reply publishes pub where req asks for its reply and, with reply
// confirms (WithReplyConfirms), waits for the broker to confirm it. It
// returns what becomes of the request: answered also when there is
// nowhere to answer, or when the classic caller is gone, as trying again
// would not help; discard when the reply path turns out to be one the
// server must not, or cannot, publish to.
func (s *Server) reply(sess *serverSession, req *inRequest, pub amqp.Publishing) outcome {
	r := req.reply
	switch {
	case !r.ok():
		return answered
	case r.declare:
		ch, err := s.classicChannel(sess, r.exchange)
		if err == nil {
			return answeredIf(s.publishReply(ch, r.exchange, r.key, pub))
		}
		if errors.Is(err, errUnanswerable) {
			s.refused(req, err)
			return discard
		}
		s.throttle.warn(s.log, "amqprpc: drop classic reply", "correlation_id", clip(req.msgID), "method", clip(req.method), "error", err)
		return answered
	case r.direct:
		o, err := s.direct.publish(s.ctx, r.key, pub)
		switch {
		case o == discard:
			s.refused(req, err)
		case err != nil:
			s.throttle.warn(s.log, "amqprpc: publish reply", "reply_to", r.key, "correlation_id", pub.CorrelationId, "error", err)
		}
		return o
	}
	return answeredIf(s.publishReply(sess.ch, "", r.key, pub))
}

// publishReply publishes pub, a reply or several, on ch and, when ch is in
// confirm mode (reply confirms, or the classic channel), waits for the
// broker to confirm it; it reports whether it went out.
func (s *Server) publishReply(ch *amqp.Channel, exchange, key string, pub amqp.Publishing) bool {
	confirm, err := ch.PublishWithDeferredConfirmWithContext(s.ctx, exchange, key,
		false, // mandatory
		false, // immediate
		pub)
	if err != nil {
		s.throttle.warn(s.log, "amqprpc: publish reply", "reply_to", key, "correlation_id", pub.CorrelationId, "error", err)
		return false
	}
	if confirm == nil { // the channel is not in confirm mode
		return true
	}
	acked, err := confirm.WaitContext(s.ctx)
	if err != nil || !acked {
		s.throttle.warn(s.log, "amqprpc: the broker did not confirm a reply; its requests go back to the queue", "reply_to", key, "correlation_id", pub.CorrelationId)
		return false
	}
	return true
}
