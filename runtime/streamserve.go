package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqprpc/amqprpc/internal/amqpio"
	"github.com/amqprpc/amqprpc/internal/wire"
)

// A stream on the server. Its request is served as a call's up to its
// method: checked, admitted, its method found; then, instead of a reply,
// the server acknowledges the request (a stream runs at most once: its
// caller has its items already when it could be lost) and runs the
// stream in two goroutines: one ranges over the method's items and
// encodes them (produce), the other sends them as its caller's credit
// allows, several to a message when several are ready, and a beat each
// StreamBeat it has sent nothing (send). Credits and cancellations come
// to the session's credit queue (streamPort).

// Why a stream ends early, as its context's cause.
var (
	errCallerCancelled = errors.New("amqprpc: the caller cancelled the stream")
	errCallerGone      = errors.New("amqprpc: the stream's caller is gone: its reply queue is")
	errSessionLost     = errors.New("amqprpc: the server's connection was lost")
	errShutdown        = errors.New("amqprpc: the server shut down before the stream ended")
)

// creditsPrefix begins the name of a server's credit queue after its
// topic's: <topic>.credits_<id>, which no server's name may begin with.
const creditsPrefix = "credits_"

// Sizes of a stream's messages and buffers.
const (
	// maxStreamItems and maxStreamBytes bound the items in a message.
	maxStreamItems = 256
	maxStreamBytes = 64 << 10
	// produceAhead is how many items the producer encodes ahead of the
	// sender.
	produceAhead = 64
)

// streamPort is a server session's end of its streams: a channel that
// publishes their messages with the mandatory flag (a message that comes
// back says its caller's reply queue is gone) and consumes the session's
// credit queue, exclusive to its connection, where callers send credits
// and cancellations.
type streamPort struct {
	sess    *serverSession
	ch      amqpio.Channel
	queue   string
	readers sync.WaitGroup // readControls and readReturns
	running sync.WaitGroup // the streams

	mu     sync.Mutex
	live   map[string]*serverStream // by request id
	gone   bool                     // the channel is gone: no stream starts
	ending bool                     // end ends them all: no stream starts
}

// serverStream is a running stream, as its port knows it.
type serverStream struct {
	id, to string // the request's id, and its caller's reply queue
	user   string // who called, as the broker checked it: only they may grant or cancel
	credit atomic.Int64
	wake   chan struct{} // a credit came
	cancel context.CancelCauseFunc
}

// grant lets st send the items before place upTo.
func (st *serverStream) grant(upTo int64) {
	for {
		cur := st.credit.Load()
		if upTo <= cur {
			return
		}
		if st.credit.CompareAndSwap(cur, upTo) {
			break
		}
	}
	select {
	case st.wake <- struct{}{}:
	default:
	}
}

// openStreams opens sess's port of streams: its channel, its credit
// queue and their readers.
func (sess *serverSession) openStreams() error {
	ch, err := sess.conn.Channel()
	if err != nil {
		return fmt.Errorf("amqprpc: open channel: %w", err)
	}
	// Named as the server's own queues are (<topic>.<name>_<id>), and bound
	// to the request exchange by its name: a caller that may call the
	// topic may send credits, with no other permission.
	q, err := declareQueue(ch, wire.Queue{Name: sess.s.topic + "." + creditsPrefix + strings.ReplaceAll(uuid.NewString(), "-", ""), AutoDelete: true, Exclusive: true})
	if err != nil {
		return err
	}
	if err := ch.QueueBind(q.Name, q.Name, sess.s.proto.RequestExchange().Name, false, nil); err != nil { // noWait
		return fmt.Errorf("amqprpc: bind the credit queue: %w", err)
	}
	controls, err := ch.Consume(q.Name, "", // consumer tag: generated
		true,  // autoAck
		true,  // exclusive
		false, // noLocal
		false, // noWait
		nil)
	if err != nil {
		return fmt.Errorf("amqprpc: consume the credit queue: %w", err)
	}
	returns := ch.NotifyReturn(make(chan amqp.Return, 16))
	p := &streamPort{sess: sess, ch: ch, queue: q.Name, live: make(map[string]*serverStream)}
	p.readers.Add(2)
	go p.readControls(controls) // both end with the channel
	go p.readReturns(returns)
	sess.streams = p
	return nil
}

// readControls hands credits and cancellations to their streams until the
// channel closes; then every stream of the port ends.
func (p *streamPort) readControls(controls <-chan amqp.Delivery) {
	defer p.readers.Done()
	s := p.sess.s
	for d := range controls {
		p.sess.conn.Release(len(d.Body)) // counted against the connection's budget as it came: credits have no body to hold
		c, err := s.proto.Streams.DecodeControl(&d)
		if err != nil {
			s.throttle.warn(s.log, "amqprpc: dropping a malformed credit", "error", err)
			continue
		}
		p.mu.Lock()
		st := p.live[c.MsgID]
		p.mu.Unlock()
		switch {
		case st == nil: // ended
		case st.user != "" && d.UserId != st.user:
			s.throttle.warn(s.log, "amqprpc: dropping a credit from another user than the stream's caller", "correlation_id", clip(c.MsgID), "user", clip(d.UserId))
		case c.Cancel:
			st.cancel(errCallerCancelled)
		default:
			st.grant(c.UpTo)
		}
	}
	p.mu.Lock()
	p.gone = true
	for _, st := range p.live {
		st.cancel(errSessionLost)
	}
	p.mu.Unlock()
	if !p.sess.conn.IsClosed() { // the channel alone closed (an item the broker refused): the session goes, and the next has streams again
		s.log.Warn("amqprpc: the channel of streams closed; reconnecting")
		p.sess.conn.Close()
	}
}

// readReturns ends the streams whose messages came back: their callers'
// reply queues are gone.
func (p *streamPort) readReturns(returns <-chan amqp.Return) {
	defer p.readers.Done()
	for r := range returns {
		p.mu.Lock()
		st := p.live[r.CorrelationId]
		p.mu.Unlock()
		if st != nil {
			st.cancel(errCallerGone)
		}
	}
}

// add registers st; it reports false when the port is gone, or has a
// stream of st's id.
func (p *streamPort) add(st *serverStream) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, dup := p.live[st.id]; dup || p.gone || p.ending {
		return false
	}
	p.live[st.id] = st
	p.running.Add(1)
	return true
}

func (p *streamPort) remove(st *serverStream) {
	p.mu.Lock()
	delete(p.live, st.id)
	p.mu.Unlock()
	p.running.Done()
}

// end ends every stream of p with cause, and waits for them, at most for
// grace.
func (p *streamPort) end(cause error, grace time.Duration) {
	p.mu.Lock()
	p.ending = true
	for _, st := range p.live {
		st.cancel(cause)
	}
	p.mu.Unlock()
	done := make(chan struct{})
	go func() { // owned here: ends when the streams have
		p.running.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(grace):
	}
}

// startStream starts the stream r asks for, and returns nil; or the reply
// to send instead, when it cannot start (the caller's failure).
func (s *Server) startStream(r *request) *ran {
	sess, in := r.d.sess, &r.in
	answer := func(failure *Error) *ran {
		r.letGo()
		return &ran{r: r, pub: s.encode(r, nil, failure)}
	}
	if !in.Reply.Batchable() {
		return answer(&Error{Code: CodeFailedPrecondition, Message: "a stream's items go to a reply queue of its caller's (reply_to), not to a direct reply-to address or a reply exchange"})
	}
	if s.closing.Load() {
		if !s.cfg.ackAfterReply { // taken at most once already: it cannot go back
			return answer(&Error{Code: CodeUnavailable, Message: "the server is shutting down"})
		}
		s.finish(r, retry) // not started: back to the queue, for another server
		return nil
	}
	select { // a slot, or a refusal: a request that waited would hold a worker and its place in the prefetch
	case s.streamSlots <- struct{}{}:
	default:
		return answer(&Error{Code: CodeResourceExhausted, Message: fmt.Sprintf("the server runs its most streams at once (%d)", cap(s.streamSlots))})
	}
	items, ctx, cancel, failure := s.dispatchStream(s.ctx, in)
	if failure == nil && sess.streams == nil {
		cancel(nil)
		failure = &Error{Code: CodeInternal, Message: "the server's session has no credit queue"}
	}
	if failure != nil {
		<-s.streamSlots
		return answer(failure)
	}
	st := &serverStream{id: in.MsgID, to: in.Reply.Key, user: in.User, wake: make(chan struct{}, 1), cancel: cancel}
	st.credit.Store(int64(in.Stream))
	if !sess.streams.add(st) {
		cancel(nil)
		<-s.streamSlots
		return answer(&Error{Code: CodeAlreadyExists, Message: fmt.Sprintf("a stream of id %s runs already, or the server's connection is going", clip(in.MsgID))})
	}
	s.stats.streams.Add(1)
	desc, method := s.methods[in.Method].desc, in.Method
	r.d.alone()           // acknowledged at once, and alone, before its items are asked for
	s.finish(r, answered) // taken: it is not run again
	s.handlers.Add(1)
	go s.runStream(sess.streams, st, items, ctx, desc, method)
	return nil
}

// produced is an item of a stream, encoded, or the error that ends it.
type produced struct {
	item json.RawMessage
	err  error
}

// runStream sends the items of st to its caller, then its end, and frees
// its slot.
func (s *Server) runStream(p *streamPort, st *serverStream, items Items, ctx context.Context, desc *ServiceDesc, method string) {
	defer s.handlers.Done()
	defer func() { <-s.streamSlots }()
	defer p.remove(st)
	out := make(chan produced, produceAhead)
	done := make(chan struct{})
	go s.produce(ctx, items, out, done, method, st.id) // owned here: ends when items do, or ctx
	if sent, failure, end := s.sendItems(p, st, ctx, out, desc); end {
		var f *wire.Failure
		if failure != nil {
			f = failure.failure(nil)
		}
		var pub amqp.Publishing
		if err := s.proto.Streams.EncodeEnd(&pub, st.id, p.queue, sent, f); err == nil {
			p.publish(st, pub)
		}
	}
	st.cancel(nil)
	<-done
}

// sendItems sends what out brings as st's credit allows, and returns how
// many items it sent, the stream's failure, if any, and whether to send
// its end: not when the stream ended early without one (its caller
// cancelled it or is gone, or the connection was lost). The end counts
// what was sent, not the credit, which a late grant may raise still.
func (s *Server) sendItems(p *streamPort, st *serverStream, ctx context.Context, out <-chan produced, desc *ServiceDesc) (sent int64, failure *Error, end bool) {
	var seq int64
	beat := time.NewTimer(streamBeat)
	defer beat.Stop()
	batch := make([]json.RawMessage, 0, 16)
	var last *produced                      // the end, read with the items before it
	var held json.RawMessage                // an item read with the items before it, for the next message
	ended := func() (int64, *Error, bool) { // by ctx, before the end
		f := cut(ctx)
		return seq, f, f != nil
	}
	flush := func() bool {
		var pub amqp.Publishing
		s.proto.Streams.EncodeItems(&pub, st.id, p.queue, seq, batch)
		seq += int64(len(batch))
		s.stats.streamItems.Add(uint64(len(batch)))
		clear(batch)
		batch = batch[:0]
		beat.Reset(streamBeat)
		return p.publish(st, pub)
	}
	for {
		if last != nil {
			if ctx.Err() != nil { // the method stopped as its context ended: not an end of its own
				return ended()
			}
			if last.err != nil {
				return seq, toError(last.err, desc), true
			}
			return seq, nil, true
		}
		for seq >= st.credit.Load() { // the caller has not read enough: wait
			select {
			case <-st.wake:
			case <-beat.C:
				if !flush() {
					return seq, nil, false
				}
			case <-ctx.Done():
				return ended()
			}
		}
		if held != nil { // read with the last message, which had no room for it
			batch, held = append(batch, held), nil
		} else {
			select {
			case x, ok := <-out:
				if !ok {
					last = &produced{}
					continue
				}
				if x.err != nil {
					last = &x
					continue
				}
				batch = append(batch, x.item)
			case <-beat.C:
				if !flush() {
					return seq, nil, false
				}
				continue
			case <-ctx.Done():
				return ended()
			}
		}
		room, size := min(st.credit.Load()-seq, maxStreamItems), len(batch[0])+2
	more: // what else is ready goes in the same message, which must fit WithMaxBodySize
		for int64(len(batch)) < room && size < maxStreamBytes {
			select {
			case x, ok := <-out:
				switch {
				case !ok:
					last = &produced{}
					break more
				case x.err != nil:
					last = &x
					break more
				case size+1+len(x.item) > s.cfg.maxBody:
					held = x.item
					break more
				}
				batch = append(batch, x.item)
				size += 1 + len(x.item)
			default:
				break more
			}
		}
		if !flush() {
			return seq, nil, false
		}
	}
}

// cut returns the failure to end a stream with when its context ended
// first: its deadline passed, or the server shut down; nil when its
// caller or its connection is gone, which no end would reach.
func cut(ctx context.Context) *Error {
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, errCallerCancelled), errors.Is(cause, errCallerGone), errors.Is(cause, errSessionLost):
		return nil
	case errors.Is(cause, context.DeadlineExceeded):
		return &Error{Code: CodeDeadlineExceeded, Message: "the stream's deadline passed"}
	}
	return &Error{Code: CodeUnavailable, Message: "the server shut down before the stream ended"}
}

// produce ranges over items, encodes each and hands it to out, until
// items end, fail or ctx ends; then it closes out and done.
func (s *Server) produce(ctx context.Context, items Items, out chan<- produced, done chan<- struct{}, method, id string) {
	defer close(done)
	defer close(out)
	put := func(x produced) bool {
		select {
		case out <- x:
			return true
		case <-ctx.Done():
			return false
		}
	}
	defer func() {
		if p := recover(); p != nil {
			s.throttle.methodError(s.log, method, "amqprpc: stream panicked", "method", method, "correlation_id", clip(id), "panic", p, "stack", string(debug.Stack()))
			put(produced{err: &Error{Code: CodeInternal, Message: fmt.Sprintf("stream %q panicked", method)}})
		}
	}()
	for v, err := range items {
		if err != nil {
			put(produced{err: err})
			return
		}
		item, err := json.Marshal(v)
		if err == nil && len(item)+2 > s.cfg.maxBody { // it travels in brackets
			err = fmt.Errorf("%d bytes, over the limit of %d (WithMaxBodySize)", len(item), s.cfg.maxBody-2)
		}
		if err != nil {
			s.throttle.methodError(s.log, method, "amqprpc: a stream's item does not encode", "method", method, "error", err)
			put(produced{err: &Error{Code: CodeInternal, Message: fmt.Sprintf("an item of %q does not encode: %v", method, err)}})
			return
		}
		if !put(produced{item: item}) {
			return
		}
	}
}

// publish publishes pub, a message of st, to its caller's reply queue
// with the mandatory flag; it reports false, and ends st, when the
// session's channel is gone.
func (p *streamPort) publish(st *serverStream, pub amqp.Publishing) bool {
	if _, err := p.ch.Publish(context.Background(), "", st.to,
		true,  // mandatory: back when the caller is gone (readReturns)
		false, // immediate
		pub); err != nil {
		st.cancel(errSessionLost)
		return false
	}
	return true
}
