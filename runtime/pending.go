package runtime

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqprpc/amqprpc/internal/wire"
)

// pending is a request waiting for its reply, or replies.
type pending struct {
	result chan callResult
	multi  bool   // takes every reply, not only the first
	key    string // where it went: its replies say whether that takes batches
	// exchange is the exchange it went to, set before it is published.
	exchange string
	// via and seq are the channel it was published on and its place
	// there, set as it is published (channel.publish).
	via   atomic.Pointer[channel]
	seq   atomic.Uint64
	beats chan struct{} // a heartbeat came: the server still runs it
	sent  atomic.Bool   // it was handed to the broker (not only queued)
	heard atomic.Int64  // a stream's: when its server last said anything, in Unix nanoseconds
	// stream holds a stream's messages (its items and its end), which its
	// reader takes as it reads; result has its failures alone.
	stream *messages
	// creditTo is where a stream's server takes credits, once a message
	// said; creditKey is the routing key of its caller's last credit,
	// which a refusal of access may be about (afterRefusal).
	creditTo, creditKey atomic.Pointer[string]
	batch               string // the id of the batch it went in, if it did; Client.mu guards it
	// provisional is a result that a final reply without one confirms
	// (oslo.messaging's servers before 4.0); resolve guards it.
	provisional *wire.Reply
}

// callResult is what ends a pending call: its reply, or an error.
type callResult struct {
	reply wire.Reply
	err   error
}

// errResend is what a call gets back when it must be sent again: it was
// queued and not published when its session was lost, or it was in a
// batch that came back from a server that does not read batches.
var errResend = errors.New("amqprpc: send the call again")

// register waits until the client has a session, or ctx ends, and records
// the request id as pending on it.
func (c *Client) register(ctx context.Context, id, key string, multi bool, window int) (*session, *pending, error) {
	size := 1
	if multi {
		size = gatherBuffer
	}
	var stream *messages
	if window > 0 { // a message of items a place, and its end: the rest are failures
		size, stream = 2, &messages{most: window + 1, ready: make(chan struct{}, 1)}
		stream.granted.Store(int64(window))
	}
	p := &pending{result: make(chan callResult, size), multi: multi, key: key, beats: make(chan struct{}, 1), stream: stream}
	for {
		c.mu.Lock()
		if c.err != nil {
			c.mu.Unlock()
			return nil, nil, c.err
		}
		if s := c.sess; s != nil {
			c.pending[id] = p
			c.mu.Unlock()
			return s, p, nil
		}
		ready := c.ready
		c.mu.Unlock()
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("%w: %w", ErrReconnecting, ctx.Err())
		case <-c.done:
			return nil, nil, ErrClosed
		}
	}
}

// unregister forgets p, pending as request id, unless another took its
// place.
func (c *Client) unregister(id string, p *pending) {
	c.mu.Lock()
	if c.pending[id] == p {
		delete(c.pending, id)
	}
	c.mu.Unlock()
}

// Batching. A client sends calls to a routing key several to a message
// only once a reply from there said that its server reads batches; a
// batch that comes back whole, answered as a request its server cannot
// read, says that one of the key's servers does not (a topic may have
// servers of other versions, or of another implementation), and the key
// gets no batch for mixedFleet, until its replies say so again.
const mixedFleet = time.Minute

// batches reports whether calls to key may go several to a message: the
// key's entry is true, not a time until which it gets no batch.
func (c *Client) batches(key string) bool {
	v, _ := c.batching.Load(key)
	on, _ := v.(bool)
	return on
}

// readsBatches records that a server of key said it reads batches.
func (c *Client) readsBatches(key string) {
	if v, ok := c.batching.Load(key); ok {
		if until, mixed := v.(time.Time); !mixed || time.Now().Before(until) {
			return
		}
	}
	c.batching.Store(key, true)
}

// bounded reports whether calls to key go on the bounded calls' channel:
// key's replies said its queue refuses requests beyond a limit, and the
// calls channel is not in confirm mode already (WithRequestConfirms).
func (c *Client) bounded(key string) bool {
	if c.cfg.requestConfirms {
		return false
	}
	_, limited := c.limited.Load(key)
	return limited
}

// inBatch records that the calls ids went in the batch id.
func (c *Client) inBatch(id string, ids []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, call := range ids {
		if p, ok := c.pending[call]; ok {
			p.batch = id
		}
	}
}

// bounced sends again, one by one, the calls of batch id, which came back
// from a server that does not read batches, and keeps batches from their
// key for a while.
func (c *Client) bounced(id string) {
	var calls []string
	var key string
	c.mu.Lock()
	for call, p := range c.pending {
		if p.batch == id {
			calls, key = append(calls, call), p.key
		}
	}
	c.mu.Unlock()
	if len(calls) == 0 {
		return
	}
	c.batching.Store(key, time.Now().Add(mixedFleet))
	c.throttle.warn(c.cfg.logger, "amqprpc: a server of this routing key does not read batches of calls; sending them one by one", "routing_key", wire.Clip(key))
	for _, call := range calls {
		c.resolve(call, callResult{err: errResend})
	}
}

// resolve hands r to the pending request id and reports whether there was
// one. A request that takes one reply is then no longer pending, unless r
// is a provisional result; a reply that says its server reads batches of
// requests opens its key to them.
func (c *Client) resolve(id string, r callResult) bool {
	return c.resolveOf(id, nil, r)
}

// resolveOf is resolve, when id's pending request is want, or any if want
// is nil: a call sent again under its id is another.
func (c *Client) resolveOf(id string, want *pending, r callResult) bool {
	c.mu.Lock()
	p, ok := c.pending[id]
	ok = ok && (want == nil || p == want)
	switch {
	case !ok:
	case r.err == nil && r.reply.Kind == wire.Provisional:
		p.provisional = &r.reply
		c.mu.Unlock()
		return true
	case r.err == nil && r.reply.Empty && p.provisional != nil:
		r.reply = *p.provisional
		fallthrough
	case !p.multi:
		delete(c.pending, id)
	}
	c.mu.Unlock()
	if ok && r.err == nil && r.reply.ReadsBatches {
		c.readsBatches(p.key)
	}
	if ok && r.err == nil && r.reply.Bounded {
		if _, known := c.limited.Load(p.key); !known {
			c.limited.Store(p.key, true)
		}
	}
	switch {
	case !ok:
	case !p.multi:
		p.result <- r // buffered, and only ever sent to once
	default:
		select {
		case p.result <- r:
		default:
			c.throttle.warn(c.cfg.logger, "amqprpc: dropping a reply: too many replies wait for their caller", "correlation_id", id)
		}
	}
	return ok
}

// heartbeat tells the pending request id, if any, that its server sent a
// heartbeat: it still runs the method.
func (c *Client) heartbeat(id string) {
	c.mu.Lock()
	p, ok := c.pending[id]
	c.mu.Unlock()
	if ok {
		select {
		case p.beats <- struct{}{}:
		default: // one is enough
		}
	}
}

// readReturns fails the requests that the broker could not route. Each
// receive on flush is a caller waiting until every return received before
// it has been handled; it is answered by closing the channel it sent, and
// done is closed when readReturns ends.
func (s *session) readReturns(returns <-chan amqp.Return, flush <-chan chan struct{}, done chan struct{}) {
	defer close(done)
	for {
		select {
		case r, ok := <-returns:
			if !ok {
				return
			}
			err := ErrNoServer
			if r.Type == wire.CreditType || r.Type == wire.CancelType {
				err = fmt.Errorf("%w: its server's credit queue is gone: the server lost its connection, or died", ErrStreamBroken)
			} else if r.Exchange == s.c.cfg.exchange { // not to a fanout exchange: a topic's queue, or a server's
				err = s.unroutable(r.RoutingKey)
			}
			for _, id := range s.c.proto.ReturnedIDs(&r) {
				s.c.resolve(id, callResult{err: err})
			}
		case f := <-flush:
			close(f)
		}
	}
}

// messages are a stream's messages that its reader has not taken, in the
// order they came: at most most of them, a message of items for each item
// of its window and its end, which a server that keeps to its credit
// never exceeds. They take memory as they come, not a window's worth up
// front: a thousand streams that each hold a few messages hold little.
type messages struct {
	mu      sync.Mutex
	queue   []wire.Reply
	most    int
	overrun bool          // one came beyond most, or beyond its credit, and was dropped
	ready   chan struct{} // one came: the reader may take it
	granted atomic.Int64  // the place up to which its reader granted items
}

// put queues r, unless most are queued already, or it starts beyond the
// credit granted; it reports whether it did.
func (m *messages) put(r *wire.Reply) bool {
	m.mu.Lock()
	ok := len(m.queue) < m.most && (r.Kind == wire.End || r.Seq < m.granted.Load())
	if ok {
		m.queue = append(m.queue, *r)
	} else {
		m.overrun = true
	}
	m.mu.Unlock()
	select {
	case m.ready <- struct{}{}:
	default:
	}
	return ok
}

// take returns the first message queued, if any, and whether one was
// dropped for want of room.
func (m *messages) take() (r wire.Reply, ok, overrun bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.queue) == 0 {
		return r, false, m.overrun
	}
	r = m.queue[0]
	m.queue[0] = wire.Reply{}
	m.queue = m.queue[1:]
	if len(m.queue) == 0 {
		m.queue = nil // its array goes: an idle stream holds nothing
	}
	return r, true, m.overrun
}
