// Package amqpio is what amqprpc runs on below RPC: the AMQP seam (Conn,
// Channel) that clients and servers talk to, the connector that dials
// brokers in turn and backs off, the reader that hands amqp091-go only
// frames it can parse, the writer that coalesces small writes, the batcher
// of messages, the multiple-ack batcher, and the budget of bytes a
// connection may hold. It knows nothing of requests, replies or methods.
package amqpio

import (
	"context"
	"net"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Conn is an AMQP connection as amqprpc uses one: what it needs of an
// *amqp.Connection, and nothing else, so that tests can stand in a broker
// of their own that fails at any step.
type Conn interface {
	// Channel opens a channel.
	Channel() (Channel, error)
	// NotifyClose registers c to receive the connection's end, and to be
	// closed then, as amqp091-go's.
	NotifyClose(c chan *amqp.Error) chan *amqp.Error
	// NotifyBlocked registers c to receive connection.blocked and
	// unblocked, as amqp091-go's.
	NotifyBlocked(c chan amqp.Blocking) chan amqp.Blocking
	// Release gives back n bytes of content to the connection's budget
	// (see Budget): a delivery's body that its owner is done with.
	Release(n int)
	// User is the name the connection logged in with, when its SASL
	// mechanism names one (PLAIN, AMQPLAIN): the user the broker checks a
	// message's user_id against. It is "" for EXTERNAL (a client
	// certificate), whose name the broker makes from the certificate as
	// its settings say.
	User() string
	Close() error
	IsClosed() bool
}

// Channel is an AMQP channel as amqprpc uses one: amqp091-go's
// *amqp.Channel, whose methods have its meaning, except Publish, which
// returns the broker's confirmation, nil unless the channel is in confirm
// mode.
type Channel interface {
	Qos(prefetchCount, prefetchSize int, global bool) error
	Confirm(noWait bool) error
	ExchangeDeclare(name, kind string, durable, autoDelete, internal, noWait bool, args amqp.Table) error
	ExchangeDeclarePassive(name, kind string, durable, autoDelete, internal, noWait bool, args amqp.Table) error
	QueueDeclare(name string, durable, autoDelete, exclusive, noWait bool, args amqp.Table) (amqp.Queue, error)
	QueueDeclarePassive(name string, durable, autoDelete, exclusive, noWait bool, args amqp.Table) (amqp.Queue, error)
	QueueBind(name, key, exchange string, noWait bool, args amqp.Table) error
	Consume(queue, consumer string, autoAck, exclusive, noLocal, noWait bool, args amqp.Table) (<-chan amqp.Delivery, error)
	Cancel(consumer string, noWait bool) error
	// Publish publishes msg and returns, in confirm mode, the broker's
	// confirmation of it, and otherwise nil.
	Publish(ctx context.Context, exchange, key string, mandatory, immediate bool, msg amqp.Publishing) (Confirmation, error)
	Ack(tag uint64, multiple bool) error
	Nack(tag uint64, multiple, requeue bool) error
	Reject(tag uint64, requeue bool) error
	NotifyClose(c chan *amqp.Error) chan *amqp.Error
	NotifyCancel(c chan string) chan string
	NotifyReturn(c chan amqp.Return) chan amqp.Return
	Close() error
	IsClosed() bool
}

// Confirmation is the broker's confirmation of one publication: Done is
// closed once it came, or once the channel closed without it, when Acked
// is false.
type Confirmation interface {
	Done() <-chan struct{}
	Acked() bool
}

// conn is a Conn over amqp091-go, with its budget of content bytes and
// the network connection under it.
type conn struct {
	*amqp.Connection
	budget    *Budget  // nil for none
	transport net.Conn // nil when not known
}

// Wrap returns c as a Conn whose deliveries' bodies are counted against
// budget, which may be nil. transport, when not nil, is the network
// connection under c, which Close closes when c does not close in time.
func Wrap(c *amqp.Connection, budget *Budget, transport net.Conn) Conn {
	return &conn{c, budget, transport}
}

// closeTimeout bounds a graceful close: amqp091-go's connection.close
// waits for the writes under way, which a stalled network holds.
const closeTimeout = time.Second

// Close closes the connection, gracefully within closeTimeout, and
// otherwise by closing the network connection.
func (c *conn) Close() error {
	if c.transport != nil {
		abort := time.AfterFunc(closeTimeout, func() { c.transport.Close() })
		defer abort.Stop()
	}
	return c.Connection.Close()
}

func (c *conn) Channel() (Channel, error) {
	ch, err := c.Connection.Channel()
	if err != nil {
		return nil, err
	}
	return channel{ch}, nil
}

func (c *conn) Release(n int) { c.budget.Release(n) }

func (c *conn) User() string {
	if len(c.Config.SASL) == 0 { // amqp091-go keeps the mechanism it picked
		return ""
	}
	switch auth := c.Config.SASL[0].(type) {
	case *amqp.PlainAuth:
		return auth.Username
	case *amqp.AMQPlainAuth:
		return auth.Username
	}
	return ""
}

// Budget returns the connection's budget, nil if it has none.
func (c *conn) Budget() *Budget { return c.budget }

// channel is a Channel over amqp091-go.
type channel struct{ *amqp.Channel }

func (ch channel) Publish(ctx context.Context, exchange, key string, mandatory, immediate bool, msg amqp.Publishing) (Confirmation, error) {
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, mandatory, immediate, msg)
	if dc == nil { // not in confirm mode, or not published: no typed nil in the interface
		return nil, err
	}
	return dc, err
}
