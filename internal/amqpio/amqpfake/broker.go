// Package amqpfake is a broker in memory behind the AMQP seam (amqpio.Conn
// and amqpio.Channel), for the tests of what the runtime does when a
// broker fails at any step: it closes a channel or a connection, cancels a
// consumer, nacks a confirm, refuses a reply route, and delivers again what
// was unacknowledged when a channel closed, as RabbitMQ does. It records
// every delivery and what became of it, and every reply published, so that
// a test can check that each delivery was settled exactly once, and each
// request acknowledged only after its reply.
package amqpfake

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqprpc/amqprpc/internal/amqpio"
)

// Broker is a broker in memory. Its zero value is not usable: make one
// with New.
type Broker struct {
	mu         sync.Mutex
	exchanges  map[string]*exchange
	queues     map[string]*queue
	conns      []*Conn
	seq        int64 // orders what happens
	nextID     int
	messages   []*Message
	deliveries []*Delivery
	replies    []Reply
	violations []string
	refused    map[string]bool // direct reply-to addresses whose replies close the connection
	nacks      int             // confirms still to nack
	hold       bool            // confirms wait for ReleaseConfirms
	held       []*confirmation
	down       bool           // connections are refused
	failNext   map[string]int // operations to fail, by name
}

// Message is a message published to a queue, and what became of it.
type Message struct {
	ID    int
	Queue string
	Pub   amqp.Publishing
	State string // ready, unacked, acked, rejected or deleted
	Taken int    // how often it was delivered
	Acked int64  // when it was acked, in the broker's sequence
}

// Delivery is one delivery of a message on a channel.
type Delivery struct {
	Msg     *Message
	MsgID   int
	Tag     uint64
	Settled string // ack, nack, reject; "lost" when its channel closed first
	ch      *Channel
	cons    *consumer
}

// Reply is a message published where no queue of the broker's takes it: to
// a direct reply-to address, to a queue nobody declared (a caller's), or
// to an exchange with no queue bound; what callers receive.
type Reply struct {
	Seq      int64
	Exchange string
	Key      string
	Pub      amqp.Publishing
}

type exchange struct {
	name, kind          string
	durable, autoDelete bool
	bindings            []binding
}

type binding struct{ queue, key string }

type queue struct {
	name      string
	exclusive *Conn // its owner, if exclusive
	ready     []*Message
	consumers []*consumer
	next      int // round robin
}

type consumer struct {
	tag        string
	q          *queue
	ch         *Channel
	deliveries chan amqp.Delivery
	unacked    int
}

// New returns an empty broker with the default exchange.
func New() *Broker {
	b := &Broker{exchanges: map[string]*exchange{}, queues: map[string]*queue{}, refused: map[string]bool{}, failNext: map[string]int{}}
	b.exchanges[""] = &exchange{kind: amqp.ExchangeDirect, durable: true}
	return b
}

// Connect opens a connection, as amqpio.Connector's Connect does.
func (b *Broker) Connect(ctx context.Context) (amqpio.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.down {
		return nil, errors.New("amqpfake: connection refused")
	}
	c := &Conn{b: b}
	b.conns = append(b.conns, c)
	return c, nil
}

// Conn is a connection to the fake broker.
type Conn struct {
	b        *Broker
	closed   bool
	channels []*Channel
	notify   []chan *amqp.Error
}

// Channel is a channel of a fake connection.
type Channel struct {
	c         *Conn
	closed    bool
	confirm   bool
	prefetch  int
	nextTag   uint64
	unacked   []*Delivery
	consumers []*consumer
	closes    []chan *amqp.Error
	cancels   []chan string
	returns   []chan amqp.Return
	pending   []*confirmation
}

var errClosed = amqp.ErrClosed

func (c *Conn) Channel() (amqpio.Channel, error) {
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	if c.closed {
		return nil, errClosed
	}
	if c.b.fails("channel") {
		return nil, &amqp.Error{Code: amqp.NotAllowed, Reason: "NOT_ALLOWED - a fault of the fake broker's", Server: true}
	}
	ch := &Channel{c: c}
	c.channels = append(c.channels, ch)
	return ch, nil
}

func (c *Conn) NotifyClose(l chan *amqp.Error) chan *amqp.Error {
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	if c.closed {
		close(l)
	} else {
		c.notify = append(c.notify, l)
	}
	return l
}

func (c *Conn) NotifyBlocked(l chan amqp.Blocking) chan amqp.Blocking { return l }
func (c *Conn) Release(int)                                           {}

// User is the fake connection's login: guest.
func (c *Conn) User() string { return "guest" }

func (c *Conn) Close() error {
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	c.closeWith(nil)
	return nil
}

func (c *Conn) IsClosed() bool {
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	return c.closed
}

// closeWith closes c, with err when the broker closed it; b.mu is held.
func (c *Conn) closeWith(err *amqp.Error) {
	if c.closed {
		return
	}
	c.closed = true
	for _, ch := range c.channels {
		ch.closeWith(err)
	}
	for _, l := range c.notify {
		if err != nil {
			select {
			case l <- err:
			default:
			}
		}
		close(l)
	}
	for name, q := range c.b.queues { // exclusive queues go with their connection
		if q.exclusive == c {
			c.b.deleteQueue(q)
			delete(c.b.queues, name)
		}
	}
	c.b.dispatch()
}

// closeWith closes ch: its unacknowledged deliveries go back to their
// queues, marked redelivered; b.mu is held.
func (ch *Channel) closeWith(err *amqp.Error) {
	if ch.closed {
		return
	}
	ch.closed = true
	for _, d := range ch.unacked {
		d.Settled = "lost"
		d.Msg.State = "ready"
		if q := ch.c.b.queues[d.Msg.Queue]; q != nil {
			q.ready = append([]*Message{d.Msg}, q.ready...)
		} else {
			d.Msg.State = "deleted"
		}
	}
	ch.unacked = nil
	for _, cons := range slices.Clone(ch.consumers) {
		cons.remove()
	}
	for _, l := range ch.closes {
		if err != nil {
			select {
			case l <- err:
			default:
			}
		}
		close(l)
	}
	for _, l := range ch.cancels {
		close(l)
	}
	for _, p := range ch.pending {
		p.resolve(false)
	}
	ch.pending = nil
}

// remove takes cons from its queue and closes its deliveries; b.mu is
// held.
func (cons *consumer) remove() {
	cons.q.consumers = slices.DeleteFunc(cons.q.consumers, func(o *consumer) bool { return o == cons })
	cons.ch.consumers = slices.DeleteFunc(cons.ch.consumers, func(o *consumer) bool { return o == cons })
	close(cons.deliveries)
}

// fail closes ch with a channel error of the broker's, as RabbitMQ closes a
// channel for an error of what it was asked; b.mu is held.
func (ch *Channel) fail(code int, reason string) error {
	err := &amqp.Error{Code: code, Reason: reason, Server: true}
	ch.closeWith(err)
	ch.c.b.dispatch()
	return err
}

func (ch *Channel) lock() (*Broker, error) {
	b := ch.c.b
	b.mu.Lock()
	if ch.closed {
		b.mu.Unlock()
		return nil, errClosed
	}
	return b, nil
}

func (ch *Channel) Qos(prefetchCount, _ int, _ bool) error {
	b, err := ch.lock()
	if err != nil {
		return err
	}
	defer b.mu.Unlock()
	ch.prefetch = prefetchCount
	return nil
}

func (ch *Channel) Confirm(bool) error {
	b, err := ch.lock()
	if err != nil {
		return err
	}
	defer b.mu.Unlock()
	ch.confirm = true
	return nil
}

func (ch *Channel) ExchangeDeclare(name, kind string, durable, autoDelete, _, _ bool, _ amqp.Table) error {
	b, err := ch.lock()
	if err != nil {
		return err
	}
	defer b.mu.Unlock()
	if x, ok := b.exchanges[name]; ok {
		if x.kind != kind || x.durable != durable || x.autoDelete != autoDelete {
			return ch.fail(amqp.PreconditionFailed, "PRECONDITION_FAILED - inequivalent arg for exchange "+name)
		}
		return nil
	}
	b.exchanges[name] = &exchange{name: name, kind: kind, durable: durable, autoDelete: autoDelete}
	return nil
}

func (ch *Channel) ExchangeDeclarePassive(name, _ string, _, _, _, _ bool, _ amqp.Table) error {
	b, err := ch.lock()
	if err != nil {
		return err
	}
	defer b.mu.Unlock()
	if _, ok := b.exchanges[name]; !ok {
		return ch.fail(amqp.NotFound, "NOT_FOUND - no exchange "+name)
	}
	return nil
}

func (ch *Channel) QueueDeclare(name string, _, _, exclusive, _ bool, _ amqp.Table) (amqp.Queue, error) {
	b, err := ch.lock()
	if err != nil {
		return amqp.Queue{}, err
	}
	defer b.mu.Unlock()
	if b.fails("declare") { // as for a queue whose node is down
		return amqp.Queue{}, ch.fail(amqp.NotFound, "NOT_FOUND - a fault of the fake broker's")
	}
	if name == "" {
		b.nextID++
		name = fmt.Sprintf("amq.gen-%d", b.nextID)
	}
	q, ok := b.queues[name]
	if !ok {
		q = &queue{name: name}
		if exclusive {
			q.exclusive = ch.c
		}
		b.queues[name] = q
	} else if q.exclusive != nil && q.exclusive != ch.c {
		return amqp.Queue{}, ch.fail(amqp.ResourceLocked, "RESOURCE_LOCKED - exclusive queue "+name)
	}
	return amqp.Queue{Name: name, Messages: len(q.ready)}, nil
}

func (ch *Channel) QueueDeclarePassive(name string, _, _, _, _ bool, _ amqp.Table) (amqp.Queue, error) {
	b, err := ch.lock()
	if err != nil {
		return amqp.Queue{}, err
	}
	defer b.mu.Unlock()
	q, ok := b.queues[name]
	if !ok {
		return amqp.Queue{}, ch.fail(amqp.NotFound, "NOT_FOUND - no queue "+name)
	}
	return amqp.Queue{Name: name, Messages: len(q.ready), Consumers: len(q.consumers)}, nil
}

func (ch *Channel) QueueBind(name, key, exchange string, _ bool, _ amqp.Table) error {
	b, err := ch.lock()
	if err != nil {
		return err
	}
	defer b.mu.Unlock()
	x, ok := b.exchanges[exchange]
	if _, q := b.queues[name]; !ok || !q {
		return ch.fail(amqp.NotFound, "NOT_FOUND - no exchange or queue")
	}
	if !slices.Contains(x.bindings, binding{name, key}) {
		x.bindings = append(x.bindings, binding{name, key})
	}
	return nil
}

func (ch *Channel) Consume(name, tag string, autoAck, _, _, _ bool, _ amqp.Table) (<-chan amqp.Delivery, error) {
	b, err := ch.lock()
	if err != nil {
		return nil, err
	}
	defer b.mu.Unlock()
	if name == "amq.rabbitmq.reply-to" && autoAck { // no caller of the fake's replies to it
		return make(chan amqp.Delivery), nil
	}
	if autoAck {
		return nil, errors.New("amqpfake: consumers acknowledge")
	}
	q, ok := b.queues[name]
	if !ok || b.fails("consume") {
		return nil, ch.fail(amqp.NotFound, "NOT_FOUND - no queue "+name)
	}
	if tag == "" {
		b.nextID++
		tag = fmt.Sprintf("ctag-%d", b.nextID)
	}
	room := ch.prefetch
	if room == 0 {
		room = 1024
	}
	cons := &consumer{tag: tag, q: q, ch: ch, deliveries: make(chan amqp.Delivery, room)}
	q.consumers = append(q.consumers, cons)
	ch.consumers = append(ch.consumers, cons)
	b.dispatch()
	return cons.deliveries, nil
}

func (ch *Channel) Cancel(tag string, _ bool) error {
	b, err := ch.lock()
	if err != nil {
		return err
	}
	defer b.mu.Unlock()
	for _, cons := range slices.Clone(ch.consumers) {
		if cons.tag == tag {
			cons.remove()
		}
	}
	return nil
}

func (ch *Channel) Publish(_ context.Context, exchange, key string, mandatory, _ bool, msg amqp.Publishing) (amqpio.Confirmation, error) {
	b, err := ch.lock()
	if err != nil {
		return nil, err
	}
	defer b.mu.Unlock()
	b.seq++
	if b.fails("publish") { // as for an exchange that went
		return nil, ch.fail(amqp.NotFound, "NOT_FOUND - a fault of the fake broker's")
	}
	if strings.HasPrefix(key, "amq.rabbitmq.reply-to") && exchange == "" && b.refused[key] {
		// As amqp091-go: the frames were written, and the confirm is
		// nacked when the connection closes.
		var c *confirmation
		if ch.confirm {
			c = &confirmation{done: make(chan struct{})}
			ch.pending = append(ch.pending, c)
		}
		ch.c.closeWith(&amqp.Error{Code: amqp.InternalError, Reason: "INTERNAL_ERROR", Server: true})
		if c == nil {
			return nil, nil
		}
		return c, nil
	}
	x, ok := b.exchanges[exchange]
	if !ok {
		return nil, ch.fail(amqp.NotFound, "NOT_FOUND - no exchange "+exchange)
	}
	var c *confirmation
	if ch.confirm {
		c = &confirmation{done: make(chan struct{})}
		if b.nacks > 0 { // the broker did not take it
			b.nacks--
			c.resolve(false)
			return c, nil
		}
		if b.hold {
			b.held = append(b.held, c)
			ch.pending = append(ch.pending, c)
		} else {
			defer c.resolve(true)
		}
	}
	var to []*queue
	switch {
	case exchange == "":
		if q := b.queues[key]; q != nil {
			to = append(to, q)
		}
	default:
		for _, bd := range x.bindings {
			if (x.kind == amqp.ExchangeFanout || bd.key == key) && b.queues[bd.queue] != nil {
				to = append(to, b.queues[bd.queue])
			}
		}
	}
	switch {
	case len(to) == 0 && mandatory && exchange != "": // unroutable: returned, if anyone listens
		for _, l := range ch.returns {
			select {
			case l <- amqp.Return{ReplyCode: amqp.NoRoute, ReplyText: "NO_ROUTE", Exchange: exchange, RoutingKey: key, CorrelationId: msg.CorrelationId}:
			default:
			}
		}
	case len(to) == 0:
		b.replies = append(b.replies, Reply{Seq: b.seq, Exchange: exchange, Key: key, Pub: msg})
	}
	for _, q := range to {
		b.enqueue(q, msg)
	}
	b.dispatch()
	if c == nil {
		return nil, nil
	}
	return c, nil
}

// fails reports whether the operation op is to fail now, and counts it;
// b.mu is held.
func (b *Broker) fails(op string) bool {
	if b.failNext[op] > 0 {
		b.failNext[op]--
		return true
	}
	return false
}

// enqueue puts msg, a copy, at the end of q; b.mu is held.
func (b *Broker) enqueue(q *queue, msg amqp.Publishing) *Message {
	b.nextID++
	m := &Message{ID: b.nextID, Queue: q.name, Pub: msg, State: "ready"}
	b.messages = append(b.messages, m)
	q.ready = append(q.ready, m)
	return m
}

func (ch *Channel) Ack(tag uint64, multiple bool) error {
	return ch.settle(tag, multiple, "ack", false)
}
func (ch *Channel) Reject(tag uint64, requeue bool) error {
	return ch.settle(tag, false, "reject", requeue)
}
func (ch *Channel) Nack(tag uint64, multiple, requeue bool) error {
	return ch.settle(tag, multiple, "nack", requeue)
}

// settle settles the delivery tag, or every one up to it: a tag not
// unacknowledged is an error of the client's, for which RabbitMQ closes
// the channel.
func (ch *Channel) settle(tag uint64, multiple bool, how string, requeue bool) error {
	b, err := ch.lock()
	if err != nil {
		return err
	}
	defer b.mu.Unlock()
	b.seq++
	var settled []*Delivery
	keep := ch.unacked[:0]
	for _, d := range ch.unacked {
		if d.Tag == tag || (multiple && d.Tag < tag) {
			settled = append(settled, d)
		} else {
			keep = append(keep, d)
		}
	}
	if !slices.ContainsFunc(settled, func(d *Delivery) bool { return d.Tag == tag }) {
		b.violations = append(b.violations, fmt.Sprintf("%s of delivery tag %d, not unacknowledged on its channel", how, tag))
		return ch.fail(amqp.PreconditionFailed, fmt.Sprintf("PRECONDITION_FAILED - unknown delivery tag %d", tag))
	}
	ch.unacked = keep
	for _, d := range settled {
		d.Settled = how
		if d.cons != nil {
			d.cons.unacked--
		}
		m := d.Msg
		switch {
		case how == "ack":
			m.State, m.Acked = "acked", b.seq
		case requeue:
			m.State = "ready"
			if q := b.queues[m.Queue]; q != nil {
				q.ready = append([]*Message{m}, q.ready...)
			}
		default:
			m.State = "rejected"
		}
	}
	b.dispatch()
	return nil
}

func (ch *Channel) NotifyClose(l chan *amqp.Error) chan *amqp.Error {
	b := ch.c.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if ch.closed {
		close(l)
	} else {
		ch.closes = append(ch.closes, l)
	}
	return l
}

func (ch *Channel) NotifyCancel(l chan string) chan string {
	b := ch.c.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if ch.closed {
		close(l)
	} else {
		ch.cancels = append(ch.cancels, l)
	}
	return l
}

func (ch *Channel) NotifyReturn(l chan amqp.Return) chan amqp.Return {
	ch.c.b.mu.Lock()
	defer ch.c.b.mu.Unlock()
	ch.returns = append(ch.returns, l)
	return l
}

func (ch *Channel) Close() error {
	b := ch.c.b
	b.mu.Lock()
	defer b.mu.Unlock()
	ch.closeWith(nil)
	b.dispatch()
	return nil
}

func (ch *Channel) IsClosed() bool {
	b := ch.c.b
	b.mu.Lock()
	defer b.mu.Unlock()
	return ch.closed
}

// dispatch delivers ready messages to consumers with room, in turn; b.mu
// is held.
func (b *Broker) dispatch() {
	for _, q := range b.queues {
		for len(q.ready) > 0 {
			var to *consumer
			for i := range q.consumers {
				c := q.consumers[(q.next+i)%len(q.consumers)]
				if c.unacked < cap(c.deliveries) {
					to = c
					q.next = (q.next + i + 1) % len(q.consumers)
					break
				}
			}
			if to == nil {
				break
			}
			m := q.ready[0]
			q.ready = q.ready[1:]
			m.State = "unacked"
			m.Taken++
			ch := to.ch
			ch.nextTag++
			d := &Delivery{Msg: m, MsgID: m.ID, Tag: ch.nextTag, ch: ch, cons: to}
			b.deliveries = append(b.deliveries, d)
			ch.unacked = append(ch.unacked, d)
			to.unacked++
			p := m.Pub
			to.deliveries <- amqp.Delivery{ // room: at most prefetch unacknowledged
				ConsumerTag: to.tag, DeliveryTag: d.Tag, Redelivered: m.Taken > 1, RoutingKey: q.name,
				Headers: p.Headers, ContentType: p.ContentType, ContentEncoding: p.ContentEncoding, DeliveryMode: p.DeliveryMode,
				CorrelationId: p.CorrelationId, ReplyTo: p.ReplyTo, Expiration: p.Expiration, MessageId: p.MessageId, Type: p.Type, Body: p.Body,
			}
		}
	}
}

// confirmation is the fake broker's confirmation of a publication.
type confirmation struct {
	done     chan struct{}
	acked    bool
	resolved bool // b.mu guards it, once published
}

func (c *confirmation) resolve(acked bool) {
	if c.resolved {
		return
	}
	c.resolved, c.acked = true, acked
	close(c.done)
}

func (c *confirmation) Done() <-chan struct{} { return c.done }
func (c *confirmation) Acked() bool           { <-c.done; return c.acked }

// deleteQueue cancels q's consumers, as RabbitMQ does when it deletes a
// queue, and drops its messages; b.mu is held.
func (b *Broker) deleteQueue(q *queue) {
	for _, cons := range slices.Clone(q.consumers) {
		for _, l := range cons.ch.cancels {
			select {
			case l <- cons.tag:
			default:
			}
		}
		cons.remove()
	}
	for _, m := range q.ready {
		m.State = "deleted"
	}
	q.ready = nil
}
