package runtime

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"
)

// A server publishes what callers it did not write tell it to: a reply
// goes to their reply_to, or to an exchange their msg_id names, with their
// id as correlation_id. What it copies from a request into what it
// publishes is checked here, before anything is published, so that no
// request can make the broker or amqp091-go close the server's connection,
// nor make the server publish anywhere but to a caller's reply path. A
// request whose reply cannot go where it asks is rejected without requeue,
// unanswered and unrun, logged once and counted (ServerStats.Unanswerable).

// maxShortString is the longest AMQP short string: names, ids, reply_to.
const maxShortString = 255

// directReplyTo is the prefix of RabbitMQ's direct reply-to addresses.
const directReplyTo = "amq.rabbitmq.reply-to."

// errUnanswerable wraps every reason why a reply cannot go where its
// request asks.
var errUnanswerable = errors.New("the reply cannot go where the request asks")

// checkReply returns why the reply to req cannot be published where req
// asks, or nil.
func (s *Server) checkReply(req *inRequest) error {
	r := req.reply
	if !r.ok() {
		return nil
	}
	if len(req.msgID) > maxShortString {
		return fmt.Errorf("%w: its id of %d bytes does not fit an AMQP short string (%d)", errUnanswerable, len(req.msgID), maxShortString)
	}
	if len(r.key) > maxShortString { // from a body (oslo.messaging's _reply_q), not a property
		return fmt.Errorf("%w: its reply queue's name of %d bytes does not fit an AMQP short string (%d)", errUnanswerable, len(r.key), maxShortString)
	}
	if !r.declare {
		return nil
	}
	switch x := r.exchange; {
	case strings.HasPrefix(x, "amq."):
		return fmt.Errorf("%w: exchange %s belongs to the broker", errUnanswerable, clip(x))
	case x == s.cfg.exchange, strings.HasPrefix(x, s.cfg.exchange+".fanout."), strings.HasSuffix(x, "_fanout"): // amqprpc's, or another system's (OpenStack's)
		return fmt.Errorf("%w: exchange %s carries requests, not replies", errUnanswerable, clip(x))
	}
	return nil
}

// unanswerable rejects req, whose reply cannot go where it asks, without
// requeue.
func (s *Server) unanswerable(sess *serverSession, t *taken, req *inRequest, why error) {
	s.refused(req, why)
	s.settle(sess, t, req, discard)
}

// refused logs and counts req, whose reply cannot go where it asks, once.
func (s *Server) refused(req *inRequest, why error) {
	s.stats.unanswerable.Add(1)
	s.throttle.warn(s.log, "amqprpc: rejecting a request that cannot be answered where it asks", "correlation_id", clip(req.msgID), "method", clip(req.method), "error", why)
}

// clip returns s, or its first bytes and how long it was, for an error
// message or a log line that quotes what a caller sent.
func clip(s string) string {
	const most = 64
	if len(s) <= most {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q... (%d bytes)", s[:most], len(s))
}

// classicChannel returns the channel for a reply to a classic caller,
// after checking that exchange is one such a caller declares for its
// reply: it exists (else nobody waits: errNoCaller) and is a direct
// exchange, not durable, auto-delete (else errUnanswerable). A check that
// fails closes the dedicated channel it runs on, which is reopened for the
// next reply. The channel is in confirm mode: the request is acknowledged
// once the broker has taken the reply, as for a reply on the server's own
// channel.
func (s *Server) classicChannel(sess *serverSession, exchange string) (*amqp.Channel, error) {
	sess.classicMu.Lock()
	defer sess.classicMu.Unlock()
	if sess.classicCh == nil || sess.classicCh.IsClosed() {
		ch, err := sess.conn.Channel()
		if err != nil {
			return nil, fmt.Errorf("open channel: %w", err)
		}
		if err := ch.Confirm(false); err != nil { // noWait
			ch.Close()
			return nil, fmt.Errorf("confirm mode: %w", err)
		}
		sess.classicCh = ch
	}
	ch := sess.classicCh
	if err := ch.ExchangeDeclarePassive(exchange, amqp.ExchangeDirect, false, true, false, false, nil); err != nil {
		return nil, fmt.Errorf("%w: exchange %s: %w", errNoCaller, clip(exchange), err)
	}
	if err := ch.ExchangeDeclare(exchange, amqp.ExchangeDirect,
		false, // durable
		true,  // autoDelete
		false, // internal
		false, // noWait
		nil); err != nil {
		return nil, fmt.Errorf("%w: exchange %s is not a direct, transient, auto-delete exchange: %w", errUnanswerable, clip(exchange), err)
	}
	return ch, nil
}

// errNoCaller is a classic reply exchange that does not exist: its caller
// is gone.
var errNoCaller = errors.New("no caller waits")

// directReplies publishes replies to RabbitMQ's direct reply-to addresses
// (amq.rabbitmq.reply-to.<suffix>). Only the broker can tell whether a
// suffix names a live consumer: one that does not decode, or that names a
// node the broker does not know, makes RabbitMQ close the publishing
// connection. So these replies go through a connection of their own,
// opened when the first is due, one at a time, each confirmed: when that
// connection dies under a reply, the reply was refused, and its request
// is rejected rather than delivered again to do the same; the server's
// own connection, its consumers and its other requests are untouched.
type directReplies struct {
	connector *connector
	mu        sync.Mutex
	conn      *amqp.Connection
	ch        *amqp.Channel
}

// publish publishes pub to key and returns what becomes of its request:
// answered once the broker confirms it, discard when the broker closed the
// connection rather than take it, retry when no connection could be had.
func (dr *directReplies) publish(ctx context.Context, key string, pub amqp.Publishing) (outcome, error) {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	if dr.ch == nil || dr.ch.IsClosed() {
		if err := dr.open(); err != nil {
			return retry, err
		}
	}
	confirm, err := dr.ch.PublishWithDeferredConfirmWithContext(ctx, "", key,
		false, // mandatory
		false, // immediate
		pub)
	if err != nil {
		return retry, err
	}
	acked, err := confirm.WaitContext(ctx)
	switch {
	case acked:
		return answered, nil
	case err != nil: // the server is shutting down
		return retry, err
	case dr.ch.IsClosed():
		return discard, fmt.Errorf("%w: the broker closed the connection rather than route a reply to %s", errUnanswerable, clip(key))
	}
	return retry, ErrNacked
}

func (dr *directReplies) open() error {
	dr.closeLocked()
	conn, err := dr.connector.connect()
	if err != nil {
		return err
	}
	ch, err := conn.Channel()
	if err == nil {
		err = ch.Confirm(false) // noWait
	}
	if err != nil {
		conn.Close()
		return err
	}
	dr.conn, dr.ch = conn, ch
	return nil
}

// close closes the connection, if open.
func (dr *directReplies) close() {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	dr.closeLocked()
}

func (dr *directReplies) closeLocked() {
	if dr.conn != nil {
		dr.conn.Close()
		dr.conn, dr.ch = nil, nil
	}
}
