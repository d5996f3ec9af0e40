package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqprpc/amqprpc/examples/calc"
	"github.com/amqprpc/amqprpc/runtime"
)

// An implementation of the benchmarked call, Add(v1, v2), as a server and
// as a client. Each runs in a process of its own.
type impl struct {
	// serve serves topic until ctx ends; it calls ready once it takes
	// requests.
	serve func(ctx context.Context, url, topic, name string, o options, ready func()) error
	// dial returns a caller of topic, safe for concurrent use, and a
	// function that closes it.
	dial func(url, topic string, o options) (caller, func(), error)
}

// caller calls Add(i, 1) once and checks the result.
type caller func(ctx context.Context, i int) error

// options are the knobs of a run that implementations may use.
type options struct {
	variant  string // amqprpc: a name of variants
	prefetch int    // servers: 0 for the implementation's default
}

// variants are amqprpc with its delivery guarantees on and off, one at a
// time: what each costs.
var variants = map[string][]runtime.LocalOption{
	"default":                  nil,
	"safe":                     {runtime.WithProfile(runtime.Safe)},
	"fast":                     {runtime.WithProfile(runtime.Fast)},
	"safe-no-request-confirms": {runtime.WithProfile(runtime.Safe), runtime.WithRequestConfirms(false)},
	"safe-no-reply-confirms":   {runtime.WithProfile(runtime.Safe), runtime.WithReplyConfirms(false)},
	"fast-no-ack-after-reply":  {runtime.WithProfile(runtime.Fast), runtime.WithAckAfterReply(false)},
	"quorum":                   {runtime.WithQueueType(runtime.QueueQuorum)},
	// What a peer that does not batch gets: each call and each reply a
	// message of its own.
	"no-batching": {runtime.WithBatching(false)},
	// oslo.messaging's protocol, with its default settings.
	"oslo": {runtime.WithOslo(runtime.OsloConfig{ControlExchange: osloExchange})},
}

var impls = map[string]impl{
	"amqprpc": {serve: serveAmqprpc, dial: dialAmqprpc},
	// amqprpc on a quorum queue: the variant "quorum" of amqprpc.
	"amqprpc-quorum": {serve: func(ctx context.Context, url, topic, name string, o options, ready func()) error {
		o.variant = "quorum"
		return serveAmqprpc(ctx, url, topic, name, o, ready)
	}, dial: dialAmqprpc},
	"baseline": {serve: serveBaseline, dial: dialPlain(baselineExchange, directReplyTo)},
	"floor":    {serve: serveFloor, dial: dialFloor},
	// A plain client of the default amqprpc server, its replies over
	// direct reply-to or to a queue of its own (bench/replypath.go).
	"plain-direct": {serve: serveAmqprpc, dial: dialPlain(runtime.DefaultExchange, directReplyTo)},
	"plain-queue":  {serve: serveAmqprpc, dial: dialPlain(runtime.DefaultExchange, ownReplyQueue)},
}

// amqprpc: the generated Calculator client and server.

// serverOptions and clientOptions are a variant's options for each side,
// and the server's prefetch.
func serverOptions(o options) []runtime.ServerOption {
	opts := sideOf[runtime.ServerOption](variants[o.variant])
	if o.prefetch > 0 {
		opts = append(opts, runtime.WithPrefetch(o.prefetch))
	}
	return opts
}

func clientOptions(o options) []runtime.ClientOption {
	return sideOf[runtime.ClientOption](variants[o.variant])
}

// sideOf returns the options of opts that apply to side O.
func sideOf[O any](opts []runtime.LocalOption) []O {
	var side []O
	for _, opt := range opts {
		if o, ok := opt.(O); ok {
			side = append(side, o)
		}
	}
	return side
}

func serveAmqprpc(ctx context.Context, url, topic, name string, o options, ready func()) error {
	srv := runtime.NewServer(url, topic, append(serverOptions(o), runtime.WithServerName(name), runtime.WithLogger(quiet))...)
	calc.RegisterCalculatorServer(srv, new(calc.Machine))
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	c, err := runtime.Dial(url, append(clientOptions(o), runtime.WithLogger(quiet))...)
	if err != nil {
		return err
	}
	probe := calc.NewCalculatorClient(c, topic).ToServer(name)
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := probe.Add(pctx, 1, 1)
		cancel()
		if err == nil {
			break
		}
		select {
		case err := <-served:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	c.Close()
	ready()
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	<-served
	return nil
}

func dialAmqprpc(url, topic string, o options) (caller, func(), error) {
	c, err := runtime.Dial(url, append(clientOptions(o), runtime.WithLogger(quiet))...)
	if err != nil {
		return nil, nil, err
	}
	calculator := calc.NewCalculatorClient(c, topic)
	return func(ctx context.Context, i int) error {
		sum, err := calculator.Add(ctx, i, 1)
		if err == nil && sum != i+1 {
			err = fmt.Errorf("Add(%d, 1) = %d", i, sum)
		}
		return err
	}, func() { c.Close() }, nil
}

// baseline: what a careful programmer writes with amqp091-go alone. One
// connection; requests published to a topic exchange; replies over direct
// reply-to, matched to calls by correlation id in one reader goroutine
// (dialPlain); a server that acks each request after replying, prefetch
// 256, replying through the default exchange.

const baselineExchange = "bench.baseline"

// plainRequest is the request body of add(v1, v2), as dialPlain's client
// writes it and the baseline's server reads it.
type plainRequest struct {
	Method string `json:"method"`
	Args   struct {
		V1 int `json:"v1"`
		V2 int `json:"v2"`
	} `json:"args"`
}

type baselineReply struct {
	Result int `json:"result"`
}

func serveBaseline(ctx context.Context, url, topic, name string, o options, ready func()) error {
	conn, err := amqp.Dial(url)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := ch.ExchangeDeclare(baselineExchange, "topic", false, false, false, false, nil); err != nil {
		return err
	}
	if _, err := ch.QueueDeclare(topic, false, false, false, false, nil); err != nil {
		return err
	}
	if err := ch.QueueBind(topic, topic, baselineExchange, false, nil); err != nil {
		return err
	}
	prefetch := 256
	if o.prefetch > 0 {
		prefetch = o.prefetch
	}
	if err := ch.Qos(prefetch, 0, false); err != nil {
		return err
	}
	msgs, err := ch.Consume(topic, "", false, false, false, false, nil)
	if err != nil {
		return err
	}
	ready()
	go func() { <-ctx.Done(); ch.Cancel("", false); conn.Close() }()
	for d := range msgs {
		var req plainRequest
		if err := json.Unmarshal(d.Body, &req); err != nil {
			d.Reject(false)
			continue
		}
		body, _ := json.Marshal(baselineReply{Result: req.Args.V1 + req.Args.V2})
		ch.PublishWithContext(ctx, "", d.ReplyTo, false, false, amqp.Publishing{
			ContentType:   "application/json",
			CorrelationId: d.CorrelationId,
			Body:          body,
		})
		d.Ack(false)
	}
	return nil
}

// plainReply is a reply body as a plain client reads it: amqprpc's server
// sends a failure instead of a result when the call failed.
type plainReply struct {
	Result  int `json:"result"`
	Failure *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"failure"`
}

// Where a plain client asks for its replies: RabbitMQ's direct reply-to,
// or a queue of its own (server-named, exclusive, auto-delete).
const (
	directReplyTo = "amq.rabbitmq.reply-to"
	ownReplyQueue = ""
)

// dialPlain returns the dial of a client written with amqp091-go alone,
// as RabbitMQ's RPC tutorial has it: one connection, each request
// published to exchange with the topic as routing key and a correlation
// id, replies consumed without acks from replyQueue (directReplyTo, or
// ownReplyQueue for a queue declared for them) and matched to calls by
// correlation id in one reader goroutine.
func dialPlain(exchange, replyQueue string) func(url, topic string, o options) (caller, func(), error) {
	return func(url, topic string, o options) (caller, func(), error) {
		conn, err := amqp.Dial(url)
		if err != nil {
			return nil, nil, err
		}
		ch, err := conn.Channel()
		if err != nil {
			conn.Close()
			return nil, nil, err
		}
		replyTo, replies, err := consumeReplies(ch, replyQueue)
		if err != nil {
			conn.Close()
			return nil, nil, err
		}
		p := &plainClient{ch: ch, exchange: exchange, topic: topic, replyTo: replyTo, pending: make(map[string]chan []byte)}
		go p.read(replies)
		return p.call, func() { conn.Close() }, nil
	}
}

// consumeReplies consumes replyQueue on ch, or a queue declared for the
// purpose when it is ownReplyQueue, and returns the address to name in
// requests' reply_to. Requests go out on ch as well: the broker takes
// reply_to directReplyTo only on the channel that consumes it.
func consumeReplies(ch *amqp.Channel, replyQueue string) (string, <-chan amqp.Delivery, error) {
	if replyQueue == ownReplyQueue {
		q, err := ch.QueueDeclare("", // server-named
			false, // durable
			true,  // autoDelete
			true,  // exclusive
			false, // noWait
			nil)
		if err != nil {
			return "", nil, fmt.Errorf("declare reply queue: %w", err)
		}
		replyQueue = q.Name
	}
	replies, err := ch.Consume(replyQueue, "",
		true,  // autoAck
		true,  // exclusive
		false, // noLocal
		false, // noWait
		nil)
	if err != nil {
		return "", nil, fmt.Errorf("consume %s: %w", replyQueue, err)
	}
	return replyQueue, replies, nil
}

// plainClient is dialPlain's client.
type plainClient struct {
	ch                       *amqp.Channel
	exchange, topic, replyTo string
	seq                      atomic.Uint64
	mu                       sync.Mutex
	pending                  map[string]chan []byte // by correlation id
}

// read hands each reply to its call.
func (p *plainClient) read(replies <-chan amqp.Delivery) {
	for d := range replies {
		p.mu.Lock()
		c, ok := p.pending[d.CorrelationId]
		delete(p.pending, d.CorrelationId)
		p.mu.Unlock()
		if ok {
			c <- d.Body
		}
	}
}

// call calls add(i, 1) and checks the result.
func (p *plainClient) call(ctx context.Context, i int) error {
	id := strconv.FormatUint(p.seq.Add(1), 10)
	var req plainRequest
	req.Method, req.Args.V1, req.Args.V2 = "add", i, 1
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	c := make(chan []byte, 1)
	p.mu.Lock()
	p.pending[id] = c
	p.mu.Unlock()
	err = p.ch.PublishWithContext(ctx, p.exchange, p.topic,
		false, // mandatory
		false, // immediate
		amqp.Publishing{
			ContentType:   "application/json",
			CorrelationId: id,
			ReplyTo:       p.replyTo,
			Body:          body,
		})
	if err == nil {
		select {
		case b := <-c:
			return checkSum(b, i)
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	p.mu.Lock()
	delete(p.pending, id)
	p.mu.Unlock()
	return err
}

// checkSum checks that body is the reply of add(i, 1).
func checkSum(body []byte, i int) error {
	var rep plainReply
	switch err := json.Unmarshal(body, &rep); {
	case err != nil:
		return fmt.Errorf("add(%d, 1): %w", i, err)
	case rep.Failure != nil:
		return fmt.Errorf("add(%d, 1): %s: %s", i, rep.Failure.Code, rep.Failure.Message)
	case rep.Result != i+1:
		return fmt.Errorf("add(%d, 1) = %d", i, rep.Result)
	}
	return nil
}

// floor: two small messages through the broker, and nothing else: an
// 8-byte id published to the server's queue through the default exchange,
// echoed to the client's queue; no JSON, no acks.

func serveFloor(ctx context.Context, url, topic, name string, o options, ready func()) error {
	conn, err := amqp.Dial(url)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if _, err := ch.QueueDeclare(topic, false, false, false, false, nil); err != nil {
		return err
	}
	msgs, err := ch.Consume(topic, "", true, false, false, false, nil)
	if err != nil {
		return err
	}
	ready()
	go func() { <-ctx.Done(); conn.Close() }()
	for d := range msgs {
		ch.PublishWithContext(ctx, "", d.ReplyTo, false, false, amqp.Publishing{Body: d.Body})
	}
	return nil
}

func dialFloor(url, topic string, o options) (caller, func(), error) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return nil, nil, err
	}
	ch, err := conn.Channel()
	if err != nil {
		return nil, nil, err
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		return nil, nil, err
	}
	replies, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		return nil, nil, err
	}
	var mu sync.Mutex
	pending := make(map[uint64]chan struct{})
	go func() {
		for d := range replies {
			if len(d.Body) != 8 {
				continue
			}
			id := binary.BigEndian.Uint64(d.Body)
			mu.Lock()
			c, ok := pending[id]
			delete(pending, id)
			mu.Unlock()
			if ok {
				close(c)
			}
		}
	}()
	var seq atomic.Uint64
	call := func(ctx context.Context, i int) error {
		id := seq.Add(1)
		c := make(chan struct{})
		mu.Lock()
		pending[id] = c
		mu.Unlock()
		body := binary.BigEndian.AppendUint64(nil, id)
		err := ch.PublishWithContext(ctx, "", topic, false, false, amqp.Publishing{ReplyTo: q.Name, Body: body})
		if err == nil {
			select {
			case <-c:
				return nil
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
		mu.Lock()
		delete(pending, id)
		mu.Unlock()
		return err
	}
	return call, func() { conn.Close() }, nil
}

var errUnknownImpl = errors.New("unknown implementation")
