package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqprpc/amqprpc/internal/amqpio"
	"github.com/amqprpc/amqprpc/internal/wire"
)

// outgoing is a request ready to publish, and what ends it.
type outgoing struct {
	ctx     context.Context
	cancel  context.CancelFunc
	req     wire.Out        // encoded for each session it is sent on
	reply   bool            // it wants replies
	alone   bool            // it goes in a message of its own, never batched
	pub     amqp.Publishing // req, encoded for sess
	expires time.Time       // when the broker drops it unserved, if not at req's deadline (a stream's)
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
		c.unregister(o.req.MsgID, o.pending)
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
// version cap and what AMQP must carry, gives the request a new id and
// takes an in-flight slot. reply says whether it wants replies. The caller
// must call end.
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
	if err := c.carriable(ctx, req); err != nil {
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

// carriable returns why req, made with ctx, cannot travel: a routing key,
// an exchange or a metadata key longer than AMQP carries, which would cost
// the client its connection.
func (c *Client) carriable(ctx context.Context, req *Request) error {
	if err := shortString("routing key", routingKey(&req.Target)); err != nil {
		return err
	}
	if req.Mode == Fanout || req.Mode == CallAll {
		if err := shortString("fanout exchange", c.proto.FanoutExchange(req.Topic).Name); err != nil {
			return err
		}
	}
	md := OutgoingMetadata(ctx)
	for k := range md {
		if shortString("metadata key", k) != nil { // name the first in order, whatever the map's
			for _, k := range slices.Sorted(maps.Keys(md)) {
				if err := shortString("metadata key", k); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// encodeFor encodes o for session s: its replies go to s's reply queue,
// and it expires at its deadline. A body over the client's limit is
// ErrTooLarge.
func (c *Client) encodeFor(o *outgoing, s *session) error {
	if o.reply {
		o.req.ReplyTo = s.replyTo
	}
	expires := o.req.Deadline
	if !o.expires.IsZero() {
		expires = o.expires
	}
	o.pub = amqp.Publishing{Expiration: wire.Expiration(time.Until(expires)), UserId: s.userID()}
	if err := c.proto.EncodeRequest(&o.pub, &o.req); err != nil {
		return err
	}
	return tooLarge(o.pub.Body, c.cfg.maxBody)
}

// destination says where a request goes in a session: the channel, and
// the exchange, to publish it on.
type destination func(s *session) (*channel, string, error)

// send registers o as pending on the client's session and publishes it
// there with the mandatory flag, so that an unroutable request comes back
// as ErrNoServer; a call that may share a message with others is queued
// for the session's batcher instead. When that session's connection turns
// out to be gone, nothing was sent: send waits for the next session and
// tries again, until o's deadline.
func (c *Client) send(o *outgoing, multi bool, to destination, key string) (*channel, amqpio.Confirmation, error) {
	for {
		s, p, err := c.register(o.ctx, o.req.MsgID, key, multi, o.req.Stream)
		if err != nil {
			return nil, nil, err
		}
		o.sess, o.pending = s, p
		if err := c.encodeFor(o, s); err != nil {
			return nil, nil, err
		}
		k, exchange, err := to(s)
		p.exchange = exchange
		if err == nil {
			err = c.refused.check(exchange, key)
		}
		if errors.Is(err, ErrAccessRefused) { // remembered, or in declaring a fanout exchange
			return nil, nil, err
		}
		if err == nil {
			if err = s.waitUnblocked(o.ctx); err == nil {
				if o.req.BatchReplies && !o.alone && s.requests != nil && !s.conn.IsClosed() && c.batches(key) { // a call: it may go with others
					o.refs.Add(1) // the queue's, until publishCalls is done with it
					if err = s.requests.Send(o.ctx, key, o); err == nil {
						return k, nil, nil
					}
					o.unref()
				} else {
					var confirm amqpio.Confirmation
					confirm, err = k.publish(o.ctx, exchange, key, o.pub, p)
					if err == nil {
						p.sent.Store(true)
						return k, confirm, nil
					}
				}
			}
		}
		if cerr := o.ctx.Err(); cerr != nil { // while blocked (ErrBlocked), or waiting for room
			if errors.Is(err, cerr) {
				return nil, nil, err
			}
			return nil, nil, cerr
		}
		if !connectionLost(s, err) {
			return nil, nil, fmt.Errorf("publish: %w", err)
		}
		c.unregister(o.req.MsgID, p)
		o.pending = nil
		if !s.conn.IsClosed() && errors.Is(err, amqp.ErrClosed) {
			continue // a channel alone closed (a refusal of another request): it opens again
		}
		select {
		case <-s.lost:
		case <-o.ctx.Done():
			return nil, nil, fmt.Errorf("%w: %w", ErrReconnecting, o.ctx.Err())
		case <-c.done:
			return nil, nil, ErrClosed
		}
	}
}

// connectionLost reports whether err, of publishing on s, says that s's
// connection is lost, or going: then nothing was published.
func connectionLost(s *session, err error) bool {
	var nerr net.Error
	return s.conn.IsClosed() || errors.Is(err, ErrConnectionLost) || errors.Is(err, amqpio.ErrStopped) ||
		errors.Is(err, amqp.ErrClosed) || errors.As(err, &nerr) || errors.Is(err, io.EOF)
}

// toCalls routes a request to the calls channel and the request exchange.
func (c *Client) toCalls(s *session) (*channel, string, error) {
	k, err := s.callsChannel()
	return k, c.cfg.exchange, err
}

// callsTo returns where a call to key goes: the calls channel or, when
// key's queue refuses requests beyond a limit (and the calls channel is
// not in confirm mode), the bounded calls' channel, in confirm mode, whose
// refusals fail calls at once. Their replies come to the reply queue all
// the same.
func (c *Client) callsTo(key string) destination {
	if !c.bounded(key) {
		return c.toCalls
	}
	return func(s *session) (*channel, string, error) {
		k, err := s.callChannel(key)
		return k, c.cfg.exchange, err
	}
}

// confirmed returns the channel that is closed when the broker confirms
// confirm, or nil, which blocks forever, for a channel not in confirm mode.
func confirmed(confirm amqpio.Confirmation) <-chan struct{} {
	if confirm == nil {
		return nil
	}
	return confirm.Done()
}

// refusedBy explains a nacked confirm of a request to key on exchange, on k: the
// broker refused the message, or the channel closed, alone or with its
// connection, before the broker confirmed it, over that request's access
// or another's (ErrAccessRefused) (amqp091-go nacks what is unconfirmed when a channel
// closes).
func refusedBy(k *channel, exchange, key string) error {
	if k.ch.IsClosed() {
		if r := k.refusal(); r != nil {
			return r.of(exchange, key)
		}
		return fmt.Errorf("%w: the channel closed before the broker confirmed", ErrConnectionLost)
	}
	return errRefused
}

// errRefused is a request the broker refused: ErrOverloaded and ErrNacked.
var errRefused error = refusal{}

type refusal struct{}

func (refusal) Error() string {
	return "amqprpc: the broker refused the request: its queue is full, its servers overloaded (or the queue failed to take it)"
}

func (refusal) Is(target error) bool { return target == ErrOverloaded || target == ErrNacked }
