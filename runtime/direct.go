package runtime

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqprpc/amqprpc/internal/amqpio"
	"github.com/amqprpc/amqprpc/internal/wire"
)

// directReplies publishes replies to RabbitMQ's direct reply-to addresses
// (wire.DirectNode says what they are). Only the broker can tell whether
// an address names a live consumer, and one whose node the broker does not
// know makes it close the publishing connection, whatever else that
// connection carries. So:
//
//   - an address that cannot be one the broker made is refused before its
//     request runs (check), and so is one of a node the broker refused;
//   - a reply to a node the broker took a reply to before (known) goes as
//     a reply to a caller's queue does, on the session's channel, before
//     its request's ack: the broker takes any address of a node it knows,
//     in the encoding it made (wire.DirectNode);
//   - a reply to a node not yet known goes through a connection of the
//     server's own for them, opened when the first is due, confirmed,
//     alone, one at a time (a probe): when the broker closes that
//     connection for an internal error (541) with a probe in flight, the
//     probe's node is refused, and remembered so for directNodeTTL (the
//     replies waiting their turn to it are refused without a connection);
//     when it closes the probe's channel (a channel error: the reply
//     itself is refused, as one too large), the reply is treated as one
//     the broker nacked; when the connection closes otherwise (a blip),
//     the reply goes again, after the breaker's backoff; a probe that
//     gives up unconfirmed closes the connection, so that the broker's
//     answer to it cannot be taken for the next probe's;
//   - a node is known for goodNodeTTL, and forgotten when the broker
//     closes a session's connection for an internal error: a reply to a
//     node that left the cluster then costs the server's connection for
//     them, not its session's twice;
//   - a connection that cannot be opened is tried again after a backoff
//     that grows while it fails (a breaker), not once per reply; replies
//     wait for it, and for their turn, until their caller's deadline (or
//     replyPatience), and are then dropped (Undelivered): their requests
//     ran once, and do not run again.
type directReplies struct {
	connect  func(context.Context) (amqpio.Conn, error)
	backoff  amqpio.Backoff
	log      *slog.Logger
	throttle *throttle
	good     *cache[string, struct{}] // the nodes the broker took a reply to, for goodNodeTTL
	bad      *cache[string, struct{}] // the nodes it refused one to, for directNodeTTL
	probe    chan struct{}            // a slot: one reply to a node not known at a time

	mu       sync.Mutex
	conn     amqpio.Conn
	ch       amqpio.Channel
	closed   chan *amqp.Error // ch's end, and why: the connection's error too
	reason   *amqp.Error      // why the last connection closed
	dialing  chan struct{}    // closed when the dial under way ends; nil when none is
	failures int              // dials failed, or connections lost under a probe, since a reply went out
	retryAt  time.Time        // no dial before, while dials fail
	quit     chan struct{}    // closed by close
	stopped  bool
}

// replyPatience is how long a reply to a direct reply-to address waits for
// a connection when its request had no deadline.
const replyPatience = 30 * time.Second

// directNodes bounds how many nodes directReplies remembers, of each
// kind; directNodeTTL is for how long a refused one (it is tried again
// after that), goodNodeTTL a known one (its next reply is a probe).
const (
	directNodes   = 256
	directNodeTTL = time.Minute
	goodNodeTTL   = 10 * time.Minute
)

func newDirectReplies(connect func(context.Context) (amqpio.Conn, error), backoff amqpio.Backoff, log *slog.Logger, t *throttle) *directReplies {
	return &directReplies{connect: connect, backoff: backoff, log: log, throttle: t,
		good: newCache[string, struct{}](directNodes, goodNodeTTL), bad: newCache[string, struct{}](directNodes, directNodeTTL),
		probe: make(chan struct{}, 1), quit: make(chan struct{})}
}

// check returns why a reply cannot go to address, known before it runs: it
// cannot be a broker's, or the broker refused its node.
func (dr *directReplies) check(address string) error {
	node, err := wire.DirectNode(address)
	if err != nil {
		return fmt.Errorf("%w: reply_to %s: %w", errUnanswerable, clip(address), err)
	}
	if _, bad := dr.bad.get(node); bad {
		return fmt.Errorf("%w: reply_to %s names node %s, which the broker refused a reply to", errUnanswerable, clip(address), clip(node))
	}
	return nil
}

// known reports whether the broker took a reply to the node of address.
func (dr *directReplies) known(address string) bool {
	node, err := wire.DirectNode(address)
	if err != nil {
		return false
	}
	_, good := dr.good.get(node)
	return good
}

// send publishes pub to address, a node not known to be good, and returns
// what became of it: published once the broker confirms it, routeRefused
// when the broker refused its node, nacked when it refused the reply,
// late when it could not go out before deadline (or replyPatience, when
// zero), unpublished when the server gave up (Shutdown). One such reply
// goes at a time (a probe); the others wait their turn, until their
// deadline.
func (dr *directReplies) send(ctx context.Context, address string, deadline time.Time, pub amqp.Publishing) sent {
	node, err := wire.DirectNode(address)
	if err != nil {
		return routeRefused
	}
	if deadline.IsZero() {
		deadline = time.Now().Add(replyPatience)
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	gaveUp := func() sent {
		if time.Now().After(deadline) {
			return late
		}
		return unpublished
	}
	select {
	case dr.probe <- struct{}{}:
		defer func() { <-dr.probe }()
	case <-ctx.Done():
		return gaveUp()
	}
	if _, bad := dr.bad.get(node); bad { // refused while this one waited
		return routeRefused
	}
	_, good := dr.good.get(node)
	for {
		ch, err := dr.channel(ctx)
		if err != nil {
			return gaveUp()
		}
		switch publish(ctx, ch, "", address, pub) {
		case published:
			dr.good.add(node, struct{}{})
			dr.wentOut()
			return published
		case nacked: // the broker refused this reply: not the connection's fault
			return nacked
		}
		reason := dr.drop(ch)
		switch {
		case ctx.Err() != nil:
			return gaveUp()
		case reason == nil || !reason.Server: // a blip: the same reply goes again, after a backoff
			dr.blip()
		case reason.Code == amqp.InternalError && !good:
			dr.bad.add(node, struct{}{})
			dr.throttle.warn(dr.log, "amqprpc: the broker closed the connection rather than route a reply to a direct reply-to address; refusing the replies to its node", "reply_to", clip(address), "node", clip(node), "error", reason)
			return routeRefused
		case channelError(reason.Code): // this reply's fault, as one too large
			dr.throttle.warn(dr.log, "amqprpc: the broker refused a reply to a direct reply-to address", "reply_to", clip(address), "error", reason)
			return nacked
		default:
			dr.blip()
		}
	}
}

// channelError reports whether code is one the broker closes a channel
// with, for what was done on it (a soft error), rather than its connection.
func channelError(code int) bool {
	switch code {
	case amqp.ContentTooLarge, amqp.NoRoute, amqp.NoConsumers, amqp.AccessRefused, amqp.NotFound, amqp.ResourceLocked, amqp.PreconditionFailed:
		return true
	}
	return false
}

// blip records that the connection went under a probe: the next dial
// waits for the breaker's backoff, longer each time until a reply goes out.
func (dr *directReplies) blip() {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	dr.failures++
	dr.retryAt = time.Now().Add(dr.backoff.Delay(dr.failures - 1))
}

// wentOut records that a reply went out: the breaker closes.
func (dr *directReplies) wentOut() {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	dr.failures = 0
}

// forget forgets the nodes known to be good: the broker closed a
// session's connection for an internal error, as for a reply to a node it
// no longer knows.
func (dr *directReplies) forget() { dr.good.clear() }

// channel returns the channel of the connection, dialing one when there is
// none, unless the last dials failed less than their backoff ago; then it
// waits until ctx ends or a dial can be tried. One dial is under way at a
// time; the others wait for it.
func (dr *directReplies) channel(ctx context.Context) (amqpio.Channel, error) {
	for {
		dr.mu.Lock()
		switch {
		case dr.stopped:
			dr.mu.Unlock()
			return nil, ErrServerClosed
		case dr.ch != nil && !dr.ch.IsClosed():
			ch := dr.ch
			dr.mu.Unlock()
			return ch, nil
		case dr.dialing != nil:
			dialing := dr.dialing
			dr.mu.Unlock()
			select {
			case <-dialing:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		wait := time.Until(dr.retryAt)
		dialing := make(chan struct{})
		dr.dialing = dialing
		dr.mu.Unlock()
		err := dr.dial(ctx, wait)
		dr.mu.Lock()
		dr.dialing = nil
		if err != nil && ctx.Err() == nil { // the broker's failure, not the caller's
			dr.failures++
			dr.retryAt = time.Now().Add(dr.backoff.Delay(dr.failures - 1))
		}
		dr.mu.Unlock()
		close(dialing)
		if err != nil {
			dr.throttle.warn(dr.log, "amqprpc: cannot open the connection for direct reply-to replies", "error", err)
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
		}
	}
}

// dial opens the connection and its channel, in confirm mode, after
// waiting wait (the breaker's backoff), unless ctx ends first.
func (dr *directReplies) dial(ctx context.Context, wait time.Duration) error {
	if wait > 0 {
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		case <-dr.quit:
			return ErrServerClosed
		}
	}
	dctx, cancel := context.WithCancel(ctx) // its end stops the dial
	defer cancel()
	go func() { // owned here: ends with dctx

		select {
		case <-dr.quit:
			cancel()
		case <-dctx.Done():
		}
	}()
	conn, err := dr.connect(dctx)
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
	dr.mu.Lock()
	defer dr.mu.Unlock()
	if dr.stopped {
		conn.Close()
		return ErrServerClosed
	}
	dr.conn, dr.ch = conn, ch
	dr.closed = ch.NotifyClose(make(chan *amqp.Error, 1))
	return nil
}

// drop closes the connection of ch, a probe's that did not go out: its
// channel closed, or the probe gave up unconfirmed, when the broker's
// answer to it must not be taken for the next probe's. It returns why ch
// closed, if it did: the broker's error (which, for a connection the broker
// closed, is the connection's), or nil for a network failure. The next
// reply dials again.
func (dr *directReplies) drop(ch amqpio.Channel) *amqp.Error {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	if dr.ch != ch { // dropped already
		return dr.reason
	}
	dr.reason = nil
	if ch.IsClosed() {
		select {
		case dr.reason = <-dr.closed: // closed, or sent, as the channel's shutdown ends
		case <-time.After(time.Second):
		}
	}
	dr.conn.Close()
	dr.conn, dr.ch = nil, nil
	return dr.reason
}

// close closes the connection, if open, and ends the waits for it.
func (dr *directReplies) close() {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	if !dr.stopped {
		dr.stopped = true
		close(dr.quit)
	}
	if dr.conn != nil {
		dr.conn.Close()
		dr.conn, dr.ch = nil, nil
	}
}
