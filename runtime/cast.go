package runtime

import (
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"
)

// caster is the channel casts are published on. It is in confirm mode, so
// that a cast returns once the broker has taken its message, and its
// returns are read unbuffered, so that a return, which the broker sends
// before the confirmation of the same message, has been received when the
// confirmation arrives; flush then waits until it has been handled.
//
// A broker error closes a channel; the caster is reopened on the next cast
// rather than taking the calls' channel down with it. Exchange declarations
// that might fail (a fanout exchange declared otherwise by another program)
// run on it for the same reason.
type caster struct {
	ch    *amqp.Channel
	flush func()
}

// casterFor returns the open caster, opening one if needed, after declaring
// topic's fanout exchange on it if fanout is set.
func (c *Client) casterFor(fanout bool, topic string) (*caster, error) {
	c.castOpen.Lock()
	defer c.castOpen.Unlock()
	k := c.caster
	if k == nil || k.ch.IsClosed() {
		var err error
		if k, err = c.openCaster(); err != nil {
			return nil, err
		}
		c.caster = k
	}
	if fanout && !c.fanouts[topic] {
		if err := declareFanout(k.ch, topic); err != nil {
			return nil, err
		}
		c.fanouts[topic] = true
	}
	return k, nil
}

func (c *Client) openCaster() (*caster, error) {
	if err := c.closedErr(); err != nil {
		return nil, err
	}
	ch, err := c.conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("amqprpc: open channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil { // noWait
		ch.Close()
		return nil, fmt.Errorf("amqprpc: confirm mode: %w", err)
	}
	returns := ch.NotifyReturn(make(chan amqp.Return)) // unbuffered: see caster
	flush := make(chan chan struct{})
	dead := make(chan struct{})
	c.wg.Add(1)
	go c.readReturns(returns, flush, dead)
	return &caster{
		ch: ch,
		flush: func() {
			f := make(chan struct{})
			select {
			case flush <- f:
				<-f
			case <-dead:
			}
		},
	}, nil
}
