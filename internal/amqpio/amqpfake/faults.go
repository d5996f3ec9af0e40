package amqpfake

import (
	"slices"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Faults, as a broker has them. Each picks its victim by n, modulo those
// there are, and reports whether there was one.

// CloseChannel closes an open channel with a channel error.
func (b *Broker) CloseChannel(n int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	var open []*Channel
	for _, c := range b.conns {
		for _, ch := range c.channels {
			if !ch.closed {
				open = append(open, ch)
			}
		}
	}
	if len(open) == 0 {
		return false
	}
	open[n%len(open)].fail(amqp.PreconditionFailed, "PRECONDITION_FAILED - a fault of the fake broker's")
	return true
}

// LoseConnection closes an open connection: by the broker, or, when
// network is set, as a network failure does, with no word from it.
func (b *Broker) LoseConnection(n int, network bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	var open []*Conn
	for _, c := range b.conns {
		if !c.closed {
			open = append(open, c)
		}
	}
	if len(open) == 0 {
		return false
	}
	err := &amqp.Error{Code: amqp.ConnectionForced, Reason: "CONNECTION_FORCED - a fault of the fake broker's", Server: true}
	if network {
		err = &amqp.Error{Code: amqp.FrameError, Reason: "read: connection reset by peer"}
	}
	open[n%len(open)].closeWith(err)
	return true
}

// CancelConsumer cancels a consumer, as RabbitMQ does when the queue's
// node goes, or a consumer times out: its channel hears of it.
func (b *Broker) CancelConsumer(n int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	var all []*consumer
	for _, c := range b.conns {
		for _, ch := range c.channels {
			all = append(all, ch.consumers...)
		}
	}
	if len(all) == 0 {
		return false
	}
	cons := all[n%len(all)]
	for _, l := range cons.ch.cancels {
		select {
		case l <- cons.tag:
		default:
		}
	}
	cons.remove()
	return true
}

// DeleteQueue deletes the queue name, cancelling its consumers.
func (b *Broker) DeleteQueue(name string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	q, ok := b.queues[name]
	if ok {
		b.deleteQueue(q)
		delete(b.queues, name)
	}
	return ok
}

// NackNext makes the broker nack the next confirm it sends.
func (b *Broker) NackNext() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.nacks++
}

// FailNext makes the next operation op fail as a broker fails it:
// "channel" (channel.open refused), "declare" (a queue declaration, as for
// a queue whose node is down), "consume" (a consumer, likewise) or
// "publish" (as to an exchange that went): the last three close their
// channel.
func (b *Broker) FailNext(op string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failNext[op]++
}

// ConsumersOf returns how many consumers the queues whose names begin with
// prefix have.
func (b *Broker) ConsumersOf(prefix string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for name, q := range b.queues {
		if strings.HasPrefix(name, prefix) {
			n += len(q.consumers)
		}
	}
	return n
}

// Down makes the broker refuse new connections while down is set.
func (b *Broker) Down(down bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.down = down
}

// Connections returns how many connections the broker took.
func (b *Broker) Connections() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.conns)
}

// HoldConfirms makes the broker hold the confirms it owes until
// ReleaseConfirms, when hold is set.
func (b *Broker) HoldConfirms(hold bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.hold = hold
}

// NackHeld nacks what the broker held, as a broker that refused those
// messages, and returns how many.
func (b *Broker) NackHeld() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(b.held)
	for _, c := range b.held {
		c.resolve(false)
	}
	b.held = nil
	return n
}

// Held returns how many confirms the broker holds.
func (b *Broker) Held() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.held)
}

// ReleaseConfirms confirms what the broker held, and returns how many.
func (b *Broker) ReleaseConfirms() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(b.held)
	for _, c := range b.held {
		c.resolve(true)
	}
	b.held = nil
	return n
}

// Refuse makes a reply to the direct reply-to address close the
// connection that publishes it, as RabbitMQ does for one whose node it
// does not know (541 INTERNAL_ERROR).
func (b *Broker) Refuse(address string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refused[address] = true
}

// Publish publishes pub to exchange with key, as a client would, and
// returns how many queues it reached.
func (b *Broker) Publish(exchange, key string, pub amqp.Publishing) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	x := b.exchanges[exchange]
	if x == nil {
		return 0
	}
	n := 0
	for _, bd := range x.bindings {
		if (x.kind == amqp.ExchangeFanout || bd.key == key) && b.queues[bd.queue] != nil {
			b.enqueue(b.queues[bd.queue], pub)
			n++
		}
	}
	b.dispatch()
	return n
}

// DeclareExchange declares an exchange, as a client would.
func (b *Broker) DeclareExchange(name, kind string, durable, autoDelete bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.exchanges[name]; !ok {
		b.exchanges[name] = &exchange{name: name, kind: kind, durable: durable, autoDelete: autoDelete}
	}
}

// Idle reports whether the queue name has no message ready, and no
// channel has a delivery unacknowledged.
func (b *Broker) Idle(name string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if q := b.queues[name]; q != nil && len(q.ready) > 0 {
		return false
	}
	for _, d := range b.deliveries {
		if d.Settled == "" {
			return false
		}
	}
	return true
}

// Consumers returns how many consumers the queue name has.
func (b *Broker) Consumers(name string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if q := b.queues[name]; q != nil {
		return len(q.consumers)
	}
	return 0
}

// Record is what the broker did: every message it queued, every delivery,
// every reply, and the client errors it saw (a settlement of a delivery
// not unacknowledged).
type Record struct {
	Messages   []Message
	Deliveries []Delivery
	Replies    []Reply
	Violations []string
}

// Record returns a copy of what the broker did so far.
func (b *Broker) Record() Record {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := Record{Replies: slices.Clone(b.replies), Violations: slices.Clone(b.violations)}
	for _, m := range b.messages {
		r.Messages = append(r.Messages, *m)
	}
	for _, d := range b.deliveries {
		c := *d
		c.Msg = nil
		r.Deliveries = append(r.Deliveries, c)
	}
	return r
}
