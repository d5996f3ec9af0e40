package runtime

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqprpc/amqprpc/internal/amqpio"
	"github.com/amqprpc/amqprpc/internal/wire"
)

// Consumers. A server session consumes three queues (the topic's, its
// own, its fanout queue), each with a consumer of the session's channel
// and the workers of its deliveries (a subscription). When the broker
// cancels one, the session's watcher declares the queue again and
// consumes it anew.

// consumer is one of a server's queues and its consumer on the session's
// channel.
type consumer struct {
	queue         wire.Queue
	exchange, key string        // its binding
	fanout        bool          // the queue of requests sent to every server
	tag           string        // its consumer's tag; subMu guards it
	sub           *subscription // the deliveries under tag; subMu guards it
}

// subscription is the deliveries of one consumer's tag, and the workers
// that take them.
type subscription struct {
	c          *consumer
	deliveries <-chan amqp.Delivery
	workers    atomic.Int32 // started, and not ended: at most the prefetch count
	idle       atomic.Int32 // workers waiting for a delivery
}

// declareAndBind declares c's queue on ch and binds it.
func declareAndBind(ch amqpio.Channel, c *consumer) error {
	if _, err := declareQueue(ch, c.queue); err != nil {
		return err
	}
	if err := ch.QueueBind(c.queue.Name, c.key, c.exchange, false, nil); err != nil { // noWait
		return fmt.Errorf("amqprpc: bind queue %q to exchange %q: %w", c.queue.Name, c.exchange, err)
	}
	return nil
}

// errStopping is a consumer not started again: Shutdown cancelled them.
var errStopping = errors.New("amqprpc: the server is shutting down")

// consume starts a consumer of c's queue on the session's channel.
// Requests are acknowledged by the server, even without WithAckAfterReply,
// so that the prefetch count bounds what the broker pushes.
func (sess *serverSession) consume(c *consumer) (*subscription, error) {
	sess.subMu.Lock()
	defer sess.subMu.Unlock()
	if sess.stopping {
		return nil, errStopping
	}
	tag := "amqprpc-" + uuid.NewString()
	deliveries, err := sess.ch.Consume(c.queue.Name, tag,
		false, // autoAck
		false, // exclusive
		false, // noLocal
		false, // noWait
		nil)
	if err != nil {
		return nil, fmt.Errorf("amqprpc: consume queue %q: %w", c.queue.Name, err)
	}
	c.tag, c.sub = tag, &subscription{c: c, deliveries: deliveries}
	return c.sub, nil
}

// watch consumes again each queue whose consumer the broker cancels: it
// does so when the queue is deleted, when a classic queue's node goes
// down, or, in RabbitMQ 4.x, when a consumer of a quorum queue times out.
// It ends with the session, or when Shutdown begins.
func (sess *serverSession) watch() {
	defer sess.watcher.Done()
	s := sess.s
	for {
		var tag string
		var ok bool
		select {
		case tag, ok = <-sess.cancels:
		case <-sess.done:
			return
		case <-s.quit: // Shutdown: consumers are cancelled, none starts again
			return
		}
		if !ok {
			return
		}
		c := sess.consumerOf(tag)
		if c == nil {
			continue
		}
		s.stats.cancelled.Add(1)
		s.log.Warn("amqprpc: the broker cancelled the consumer of a queue; consuming it again", "queue", c.queue.Name)
		sess.resubscribe(c)
	}
}

// consumerOf returns the consumer whose tag is tag, if any.
func (sess *serverSession) consumerOf(tag string) *consumer {
	sess.subMu.Lock()
	defer sess.subMu.Unlock()
	for _, c := range sess.consumers {
		if c.tag == tag {
			return c
		}
	}
	return nil
}

// resubscribeMost bounds the wait between attempts to consume a queue
// again: a classic queue whose node is down comes back with its node, and
// its servers consume it within about this long of that.
const resubscribeMost = 2 * time.Second

// resubscribe declares c's queue again and consumes it, backing off
// between attempts (up to resubscribeMost) while the queue cannot be had,
// until it does, the session ends or Shutdown begins. The declarations run on a channel of
// their own, which a refusal closes instead of the session's. A queue
// declared with other settings than the server's ends the session: the
// server then fails with ErrTopologyMismatch as it reconnects.
func (sess *serverSession) resubscribe(c *consumer) {
	s := sess.s
	backoff := s.cfg.backoff()
	backoff.Most = min(backoff.Most, resubscribeMost)
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			select {
			case <-time.After(backoff.Delay(attempt - 1)):
			case <-sess.done:
				return
			case <-s.quit:
				return
			}
		}
		err := sess.subscribe(c)
		switch {
		case err == nil:
			s.log.Info("amqprpc: consuming the queue again", "queue", c.queue.Name, "attempts", attempt+1)
			return
		case errors.Is(err, errStopping), sess.ch.IsClosed():
			return
		case errors.Is(err, ErrTopologyMismatch):
			s.log.Error("amqprpc: cannot consume the queue again", "queue", c.queue.Name, "error", err)
			sess.conn.Close()
			return
		}
		s.throttle.warn(s.log, "amqprpc: cannot consume the queue yet", "queue", c.queue.Name, "attempt", attempt+1, "error", err)
	}
}

// subscribe declares c's queue, on a channel of its own, and consumes it.
func (sess *serverSession) subscribe(c *consumer) error {
	ch, err := sess.conn.Channel()
	if err != nil {
		return fmt.Errorf("amqprpc: open channel: %w", err)
	}
	defer ch.Close()
	if err := declareAndBind(ch, c); err != nil {
		return err
	}
	sub, err := sess.consume(c)
	if err != nil {
		return err
	}
	sess.grow(sub)
	return nil
}
