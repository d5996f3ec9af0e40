package runtime

import (
	"context"
	"errors"
	"fmt"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqprpc/amqprpc/internal/amqpio"
	"github.com/amqprpc/amqprpc/internal/wire"
)

// Replies. A server publishes what callers it did not write tell it to: a
// reply goes to their reply_to, or to an exchange their msg_id names, with
// their id as correlation_id. It has three routes, and one way of
// publishing on each (publish: the reply, then the broker's confirmation,
// where the channel is in confirm mode):
//
//   - a caller's own queue: on the session's channel, before the request's
//     ack (with reply confirms, confirmed first), batched with the other
//     replies to that queue while the session is busy, for callers that
//     accept it;
//   - a direct reply-to address: as to a caller's queue, when the broker
//     took a reply to the address's node before; otherwise alone, on a
//     connection of the server's own (directReplies), confirmed, as only
//     the broker can judge an address, and a bad one costs the connection
//     that publishes to it;
//   - a classic caller's exchange: on a channel of the session's own for
//     them, confirmed, once another channel has checked the exchange.
//
// What a server copies from a request into what it publishes is checked
// before the request runs (checkReply), so that no request can make the
// broker or amqp091-go close the server's connection, nor make the server
// publish anywhere but to a caller's reply path. A request whose reply
// cannot go where it asks is rejected without requeue, unanswered and
// unrun, logged once and counted (ServerStats.Unanswerable).

// errUnanswerable wraps every reason why a reply cannot go where its
// request asks.
var errUnanswerable = errors.New("the reply cannot go where the request asks")

// send publishes pub, the reply to r, where r asks, and records what
// became of it (replied).
func (s *Server) send(r *request, pub amqp.Publishing) {
	route, sess := r.in.Reply, r.d.sess
	switch {
	case !route.OK():
		s.replied(r, nowhere)
	case route.Declare:
		s.replied(r, sess.sendClassic(s.ctx, route.Exchange, route.Key, pub))
	case route.Direct && !s.direct.known(route.Key):
		s.replied(r, s.direct.send(s.ctx, route.Key, r.in.Deadline, pub))
	case r.in.Batch && !r.d.fanout && route.Batchable() && s.proto.Batches != nil:
		if sess.replies.Send(context.Background(), route.Key, queuedReply{wire.BatchedReply{MsgID: pub.CorrelationId, Body: pub.Body}, r}) != nil {
			s.replied(r, unpublished) // the session is gone
		}
	default:
		s.replied(r, sess.publish(s.ctx, route.Key, pub))
	}
}

// queuedReply is a reply on its way to a caller that accepts its replies
// batched.
type queuedReply struct {
	reply wire.BatchedReply
	r     *request
}

// publishReplies publishes qs, replies to the queue key, as one message,
// and records what became of each: the batcher's publisher.
func (sess *serverSession) publishReplies(key string, qs []queuedReply) {
	s := sess.s
	replies := make([]wire.BatchedReply, len(qs))
	for i, q := range qs {
		replies[i] = q.reply
	}
	what := unpublished
	var pub amqp.Publishing
	if err := s.proto.Batches.EncodeReplies(&pub, replies); err == nil {
		what = sess.publish(s.ctx, key, pub)
	}
	for _, q := range qs {
		s.replied(q.r, what)
	}
}

// publish publishes pub on ch to exchange and key and, when ch is in
// confirm mode, waits until the broker confirms it: the one way every
// reply goes out.
func publish(ctx context.Context, ch amqpio.Channel, exchange, key string, pub amqp.Publishing) sent {
	c, err := ch.Publish(ctx, exchange, key,
		false, // mandatory
		false, // immediate
		pub)
	if err != nil {
		return unpublished
	}
	if c == nil { // not in confirm mode
		return published
	}
	select {
	case <-c.Done():
	case <-ctx.Done():
		return unpublished
	}
	switch {
	case c.Acked():
		return published
	case ch.IsClosed(): // amqp091-go nacks what is unconfirmed when a channel closes
		return unpublished
	}
	return nacked
}

// checkReply returns why the reply to in cannot be published where in
// asks, or nil.
func (s *Server) checkReply(in *wire.In) error {
	r := in.Reply
	if !r.OK() {
		return nil
	}
	if len(in.MsgID) > wire.MaxShortString {
		return fmt.Errorf("%w: its id of %d bytes does not fit an AMQP short string (%d)", errUnanswerable, len(in.MsgID), wire.MaxShortString)
	}
	if len(r.Key) > wire.MaxShortString { // from a body (oslo.messaging's _reply_q), not a property
		return fmt.Errorf("%w: its reply queue's name of %d bytes does not fit an AMQP short string (%d)", errUnanswerable, len(r.Key), wire.MaxShortString)
	}
	switch {
	case r.Direct:
		return s.direct.check(r.Key)
	case !r.Declare:
		return nil
	}
	switch x := r.Exchange; {
	case strings.HasPrefix(x, "amq."):
		return fmt.Errorf("%w: exchange %s belongs to the broker", errUnanswerable, clip(x))
	case x == s.cfg.exchange, strings.HasPrefix(x, s.cfg.exchange+".fanout."), strings.HasSuffix(x, "_fanout"): // amqprpc's, or another system's (OpenStack's)
		return fmt.Errorf("%w: exchange %s carries requests, not replies", errUnanswerable, clip(x))
	}
	return nil
}

// refused logs and counts in, whose reply cannot go where it asks, once.
func (s *Server) refused(in *wire.In, why error) {
	s.stats.unanswerable.Add(1)
	s.throttle.warn(s.log, "amqprpc: rejecting a request that cannot be answered where it asks", "correlation_id", clip(in.MsgID), "method", clip(in.Method), "error", why)
}

// clip returns s, or its first bytes and how long it was, for an error
// message or a log line that quotes what a caller sent.
func clip(s string) string { return wire.Clip(s) }

// classicChannels are a session's channels for replies to classic callers:
// check, where the exchange a caller names is checked (a check that fails
// closes it, and it is opened again for the next), and publish, in confirm
// mode, where the replies go once checked.
type classicChannels struct {
	check, publish amqpio.Channel
}

// classicAttempts bounds how often a classic reply is published again
// when its channel closed under it: another reply's exchange went between
// its check and its publication.
const classicAttempts = 3

// sendClassic publishes pub to a classic caller's exchange, after checking
// that it is one: it exists (else nobody waits, and the reply goes
// nowhere) and is a direct exchange, not durable, auto-delete (else the
// reply is refused). A reply whose channel closed under it, taking with it
// the replies in flight there, is checked and published again: it is
// the reply that goes again, not its request.
func (sess *serverSession) sendClassic(ctx context.Context, exchange, key string, pub amqp.Publishing) sent {
	s := sess.s
	for attempt := 1; ; attempt++ {
		ch, err := sess.classicChannel(exchange)
		switch {
		case errors.Is(err, errNoCaller):
			s.throttle.warn(s.log, "amqprpc: drop classic reply", "correlation_id", clip(pub.CorrelationId), "error", err)
			return nowhere
		case errors.Is(err, errUnanswerable):
			s.throttle.warn(s.log, "amqprpc: rejecting a request that cannot be answered where it asks", "correlation_id", clip(pub.CorrelationId), "error", err)
			return routeRefused
		case err != nil && !sess.conn.IsClosed() && attempt < classicAttempts:
			continue // the channels closed under the check: asked again on new ones
		case err != nil:
			s.throttle.warn(s.log, "amqprpc: publish classic reply", "correlation_id", clip(pub.CorrelationId), "error", err)
			return unpublished
		}
		what := publish(ctx, ch, exchange, key, pub)
		if what != unpublished || sess.conn.IsClosed() || attempt == classicAttempts {
			return what
		}
	}
}

// errNoCaller is a classic reply exchange that does not exist: its caller
// is gone.
var errNoCaller = errors.New("no caller waits")

// classicChannel checks that exchange is a classic caller's reply
// exchange and returns the channel to publish the reply on.
func (sess *serverSession) classicChannel(exchange string) (amqpio.Channel, error) {
	sess.classicMu.Lock()
	defer sess.classicMu.Unlock()
	open := func(confirm bool) (amqpio.Channel, error) {
		ch, err := sess.conn.Channel()
		if err != nil {
			return nil, fmt.Errorf("open channel: %w", err)
		}
		if confirm {
			if err := ch.Confirm(false); err != nil { // noWait
				ch.Close()
				return nil, fmt.Errorf("confirm mode: %w", err)
			}
		}
		return ch, nil
	}
	c := &sess.classic
	var err error
	for _, k := range []struct {
		ch      *amqpio.Channel
		confirm bool
	}{{&c.check, false}, {&c.publish, true}} {
		if *k.ch == nil || (*k.ch).IsClosed() {
			if *k.ch, err = open(k.confirm); err != nil {
				return nil, err
			}
		}
	}
	// What the broker says of the exchange (404: gone; 406: another kind)
	// is the caller's; a channel that closed under the question (a fault,
	// or another check's refusal) says nothing of it, and is asked again.
	if err := c.check.ExchangeDeclarePassive(exchange, amqp.ExchangeDirect, false, true, false, false, nil); err != nil {
		if brokerSays(err, amqp.NotFound) {
			return nil, fmt.Errorf("%w: exchange %s: %w", errNoCaller, clip(exchange), err)
		}
		return nil, fmt.Errorf("check exchange %s: %w", clip(exchange), err)
	}
	if err := c.check.ExchangeDeclare(exchange, amqp.ExchangeDirect,
		false, // durable
		true,  // autoDelete
		false, // internal
		false, // noWait
		nil); err != nil {
		if brokerSays(err, amqp.PreconditionFailed) || brokerSays(err, amqp.AccessRefused) {
			return nil, fmt.Errorf("%w: exchange %s is not a direct, transient, auto-delete exchange, or not this server's to declare: %w", errUnanswerable, clip(exchange), err)
		}
		return nil, fmt.Errorf("check exchange %s: %w", clip(exchange), err)
	}
	return c.publish, nil
}

// brokerSays reports whether err is the broker's error of code.
func brokerSays(err error, code int) bool {
	var aerr *amqp.Error
	return errors.As(err, &aerr) && aerr.Code == code
}
