package runtime

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// outgoing is a request ready to publish, and what ends it.
type outgoing struct {
	ctx     context.Context
	cancel  context.CancelFunc
	req     outRequest      // encoded for each session it is sent on
	reply   bool            // it wants replies
	pub     amqp.Publishing // req, encoded for sess
	sess    *session
	pending *pending
	// release frees its in-flight slot once both its caller and, when it
	// was queued to be published with others, the queue are done with it
	// (refs), so that WithMaxInFlight bounds what waits in the queue too.
	release func()
	refs    atomic.Int32
}

func (o *outgoing) end(c *Client) {
	if o.pending != nil {
		c.unregister(o.req.msgID)
	}
	o.unref()
	o.cancel()
}

// unref drops one reference to o's in-flight slot.
func (o *outgoing) unref() {
	if o.refs.Add(-1) == 0 {
		o.release()
	}
}

// start prepares req: it bounds ctx by the client's timeout, checks the
// version cap, gives the request a new id and takes an in-flight slot.
// reply says whether it wants replies. The caller must call end.
func (c *Client) start(ctx context.Context, req *Request, reply bool) (*outgoing, error) {
	o := &outgoing{cancel: func() {}, release: func() {}, reply: reply}
	o.refs.Store(1) // the caller's
	if _, ok := ctx.Deadline(); !ok {
		ctx, o.cancel = context.WithTimeout(ctx, c.cfg.timeout)
	}
	o.ctx = ctx
	if err := capped(req); err != nil {
		return o, err
	}
	deadline, _ := ctx.Deadline()
	if time.Until(deadline) <= 0 {
		return o, context.DeadlineExceeded
	}
	if err := ctx.Err(); err != nil {
		return o, err
	}
	o.req = newOutRequest(ctx, req, deadline)
	if c.inFlight != nil {
		select {
		case c.inFlight <- struct{}{}:
			o.release = func() { <-c.inFlight }
		case <-ctx.Done():
			return o, fmt.Errorf("waiting for one of %d in-flight slots: %w", cap(c.inFlight), ctx.Err())
		case <-c.done:
			return o, ErrClosed
		}
	}
	return o, nil
}

// encodeFor encodes o for session s: its replies go to s's reply queue,
// and it expires at its deadline. A body over the client's limit is
// ErrTooLarge.
func (c *Client) encodeFor(o *outgoing, s *session) error {
	if o.reply {
		o.req.replyTo = s.replyTo
	}
	o.pub = amqp.Publishing{Expiration: expiration(time.Until(o.req.deadline))}
	if err := c.proto.encodeRequest(&o.pub, &o.req); err != nil {
		return err
	}
	return tooLarge(o.pub.Body, c.cfg.maxBody)
}

// destination says where a request goes in a session: the channel, and
// the exchange, to publish it on.
type destination func(s *session) (*channel, string, error)

// send registers o as pending on the client's session and publishes it
// there with the mandatory flag, so that an unroutable request comes back
// as ErrNoServer. When that session's connection turns out to be gone,
// nothing was sent: send waits for the next session and tries again, until
// o's deadline.
func (c *Client) send(o *outgoing, multi bool, to destination, key string) (*channel, *amqp.DeferredConfirmation, error) {
	for {
		s, p, err := c.register(o.ctx, o.req.msgID, key, multi)
		if err != nil {
			return nil, nil, err
		}
		o.sess, o.pending = s, p
		if err := c.encodeFor(o, s); err != nil {
			return nil, nil, err
		}
		k, exchange, err := to(s)
		if err == nil {
			if err = s.waitUnblocked(o.ctx); err == nil {
				if o.req.batchReplies && s.requests != nil && !s.conn.IsClosed() && c.batches(key) { // a call: it may go with others
					o.refs.Add(1) // the queue's, until publishCalls is done with it
					s.requests.send(key, o)
					return k, nil, nil
				}
				var confirm *amqp.DeferredConfirmation
				confirm, err = k.ch.PublishWithDeferredConfirmWithContext(o.ctx, exchange, key,
					true,  // mandatory
					false, // immediate
					o.pub)
				if err == nil {
					return k, confirm, nil
				}
			}
		}
		if !s.conn.IsClosed() && !errors.Is(err, ErrConnectionLost) {
			return nil, nil, fmt.Errorf("publish: %w", err)
		}
		c.unregister(o.req.msgID)
		o.pending = nil
		select {
		case <-s.lost:
		case <-o.ctx.Done():
			return nil, nil, fmt.Errorf("%w: %w", ErrReconnecting, o.ctx.Err())
		case <-c.done:
			return nil, nil, ErrClosed
		}
	}
}

// toCalls routes a request to the calls channel and the request exchange.
func (c *Client) toCalls(s *session) (*channel, string, error) {
	return s.calls, c.cfg.exchange, nil
}

// confirmed returns the channel that is closed when the broker confirms
// confirm, or nil, which blocks forever, for a channel not in confirm mode.
func confirmed(confirm *amqp.DeferredConfirmation) <-chan struct{} {
	if confirm == nil {
		return nil
	}
	return confirm.Done()
}

// refused explains a nacked confirm on k: the broker refused the message,
// or the channel closed, alone or with its connection, before the broker
// confirmed it (amqp091-go nacks what is unconfirmed when a channel closes).
func refused(k *channel) error {
	if k.ch.IsClosed() {
		return fmt.Errorf("%w: the channel closed before the broker confirmed", ErrConnectionLost)
	}
	return ErrNacked
}

// expiration renders ttl as an AMQP per-message TTL: whole milliseconds,
// rounded up, at least 1.
func expiration(ttl time.Duration) string {
	ms := (ttl + time.Millisecond - 1) / time.Millisecond
	return strconv.FormatInt(int64(max(ms, 1)), 10)
}
