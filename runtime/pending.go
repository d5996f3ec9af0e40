package runtime

import (
	"context"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"
)

// pending is a request waiting for its reply, or replies.
type pending struct {
	result chan callResult
	multi  bool          // takes every reply, not only the first
	key    string        // where it went: its replies say whether that takes batches
	beats  chan struct{} // a heartbeat came: the server still runs it
}

// callResult is what ends a pending call: its reply, or an error.
type callResult struct {
	reply amqp.Delivery
	err   error
}

// register waits until the client has a session, or ctx ends, and records
// the request id as pending on it.
func (c *Client) register(ctx context.Context, id, key string, multi bool) (*session, *pending, error) {
	size := 1
	if multi {
		size = gatherBuffer
	}
	p := &pending{result: make(chan callResult, size), multi: multi, key: key, beats: make(chan struct{}, 1)}
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

func (c *Client) unregister(id string) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// batches reports whether calls to key may go several to a message: a
// reply from there said that its server reads them.
func (c *Client) batches(key string) bool {
	_, ok := c.batching.Load(key)
	return ok
}

// resolve hands r to the pending request id and reports whether there was
// one. A request that takes one reply is then no longer pending; a reply
// that says its server reads batches of requests opens its key to them.
func (c *Client) resolve(id string, r callResult) bool {
	c.mu.Lock()
	p, ok := c.pending[id]
	if ok && !p.multi {
		delete(c.pending, id)
	}
	c.mu.Unlock()
	if ok && r.err == nil && !c.batches(p.key) && c.proto.acceptsBatches(&r.reply) {
		c.batching.Store(p.key, struct{}{})
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
func (c *Client) readReturns(returns <-chan amqp.Return, flush <-chan chan struct{}, done chan struct{}) {
	defer c.wg.Done()
	defer close(done)
	for {
		select {
		case r, ok := <-returns:
			if !ok {
				return
			}
			for _, id := range c.proto.returnedIDs(&r) {
				c.resolve(id, callResult{err: ErrNoServer})
			}
		case f := <-flush:
			close(f)
		}
	}
}
