package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqprpc/amqprpc/internal/amqpio"
	"github.com/amqprpc/amqprpc/internal/wire"
)

// Streams. A method whose results are one iter.Seq2[T, error] is a
// stream: its server returns an iterator, and the runtime sends what it
// yields to the caller as it comes, several small items to a message; the
// caller's generated method returns an iterator too, and ranging over it
// sends the request and reads the items. Flow control is by credit: the
// caller grants its server a window of items (WithStreamWindow) and grants
// more as it reads, to the queue of the server that took the request, so
// that neither side holds more than a window of items, however long the
// stream. docs/PROTOCOL.md says what travels.

// Items is what a stream method's handler returns: its items as they
// come, and an error that ends them. ItemsOf makes one of a method's
// iterator.
type Items = iter.Seq2[any, error]

// ItemsOf returns seq, a stream method's iterator, as Items. Generated
// handlers call it. A nil seq is a stream without items.
func ItemsOf[T any](seq iter.Seq2[T, error]) Items {
	if seq == nil {
		return func(func(any, error) bool) {}
	}
	return func(yield func(any, error) bool) {
		for v, err := range seq {
			if !yield(v, err) {
				return
			}
		}
	}
}

// ClientStream is the caller's end of a stream (Client.InvokeStream).
type ClientStream interface {
	// Recv decodes the next item into item. It returns io.EOF after the
	// last item of a stream that ended well, and otherwise the error that
	// ended the stream: the server method's (an *Error, mapped as a
	// call's), or the stream's own (ErrStreamBroken, ErrServerSilent,
	// ErrConnectionLost, the context's).
	Recv(item any) error
	// Close ends the stream, if it has not ended: its server stops
	// iterating (its method's context is cancelled). It may be called more
	// than once, but not while Recv runs in another goroutine: cancel the
	// stream's context to end a Recv that waits.
	Close()
}

// StreamInvoker is what a generated client's stream methods need of their
// Invoker: *Client and *Local implement it.
type StreamInvoker interface {
	// InvokeStream sends req, a request for a stream, and returns the
	// caller's end of it.
	InvokeStream(ctx context.Context, req Request) (ClientStream, error)
}

// StreamOf returns the items of the stream req asks inv for, as an
// iterator: ranging over it sends the request, and each range sends it
// anew. The last pair it yields carries the error that ended the stream,
// if any; breaking out of the loop ends the stream, and its server stops.
// Generated clients' stream methods return it.
func StreamOf[T any](ctx context.Context, inv Invoker, req Request) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		si, ok := inv.(StreamInvoker)
		if !ok {
			yield(zero, fmt.Errorf("amqprpc: %T carries no streams (it is no StreamInvoker)", inv))
			return
		}
		req.Mode = Stream
		st, err := si.InvokeStream(ctx, req)
		if err != nil {
			yield(zero, err)
			return
		}
		defer st.Close()
		for {
			var item T
			switch err := st.Recv(&item); {
			case err == io.EOF:
				return
			case err != nil:
				yield(zero, err)
				return
			}
			if !yield(item, nil) {
				return
			}
		}
	}
}

// Streamer opens a stream as Client.InvokeStream does.
type Streamer func(ctx context.Context, req *Request) (ClientStream, error)

// StreamClientInterceptor wraps each stream a client opens, as gRPC's
// stream interceptors do: it may change the context (metadata it adds
// travels with the request), refuse, or wrap the ClientStream that next
// returns to see each item and the stream's end.
type StreamClientInterceptor func(ctx context.Context, req *Request, next Streamer) (ClientStream, error)

// StreamHandler runs a stream method, or the next interceptor, with ctx,
// and returns its items.
type StreamHandler func(ctx context.Context) (Items, error)

// StreamServerInterceptor wraps each stream a server runs: it may look at
// or change its context, refuse it (an error is the caller's, mapped as a
// method's), or wrap the Items that next returns to see each item and the
// stream's end. The stream's context lives until the stream ends, not
// only until next returns.
type StreamServerInterceptor func(ctx context.Context, info *ServerInfo, next StreamHandler) (Items, error)

// WithStreamClientInterceptors adds interceptors that wrap each stream a
// client opens. Client only.
func WithStreamClientInterceptors(in ...StreamClientInterceptor) ClientOption {
	return clientOption(func(c *options) { c.streamClientInterceptors = append(c.streamClientInterceptors, in...) })
}

// WithStreamServerInterceptors adds interceptors that wrap each stream a
// server runs. Server only.
func WithStreamServerInterceptors(in ...StreamServerInterceptor) ServerOption {
	return serverOption(func(c *options) { c.streamServerInterceptors = append(c.streamServerInterceptors, in...) })
}

// Defaults of the options of streams.
const (
	// DefaultStreamWindow is how many items a caller lets its server send
	// before it has read them: see WithStreamWindow.
	DefaultStreamWindow = 256
	// DefaultStreamSilence is how long a caller waits without a word from
	// a stream's server before the stream fails with ErrServerSilent: a
	// server sends a beat each StreamBeat it has nothing else to send.
	DefaultStreamSilence = 5 * time.Second
	// DefaultMaxStreams bounds the streams a server runs at once: see
	// WithMaxStreams.
	DefaultMaxStreams = 1024
	// StreamBeat is how often a stream's server tells its caller that the
	// stream still runs, when it has sent nothing else.
	StreamBeat = time.Second
)

// streamBeat is StreamBeat, a variable for tests.
var streamBeat = StreamBeat

// WithStreamWindow sets how many items of a stream a client lets its
// server send before it has read them (at least 1, at most 65536): the
// client holds at most that many, and a server that outruns its reader
// waits. A wider window keeps a fast stream going over a slow network;
// a narrower one holds less. Default: DefaultStreamWindow. Client only.
func WithStreamWindow(n int) ClientOption {
	return clientOption(func(c *options) { c.streamWindow = min(max(n, 1), 1<<16) })
}

// WithStreamSilence sets how long a client waits without a word from a
// stream's server (items, or a beat, which a server sends each StreamBeat
// it has nothing else to send) before the stream fails with
// ErrServerSilent: the bound on noticing a server that died or lost its
// connection mid-stream. Default: DefaultStreamSilence; it is at least
// twice StreamBeat. Client only.
func WithStreamSilence(d time.Duration) ClientOption {
	return clientOption(func(c *options) { c.streamSilence = max(d, 2*StreamBeat) })
}

// WithMaxStreams bounds the streams a server runs at once; a stream
// request beyond is refused with CodeResourceExhausted, at once, rather
// than held (a request held would hold a worker, and its place in the
// prefetch, from the server's calls). Each stream holds two goroutines and
// a window of items until it ends: a stream waiting for its caller to read
// holds its slot, so give streams deadlines where callers are not trusted
// to read or close. Default: DefaultMaxStreams. Server only.
func WithMaxStreams(n int) ServerOption {
	return serverOption(func(c *options) { c.maxStreams = max(n, 1) })
}

// InvokeStream sends req, a request for a stream, to one server of its
// topic (or to Target.Server), through the client's stream interceptors,
// and returns the caller's end of the stream. Generated clients' stream
// methods call it (StreamOf); most code ranges over those instead.
//
// The stream's request must be taken by a server within the client's
// timeout (WithTimeout), or ctx's deadline if sooner; the stream then
// runs until its last item, until ctx ends (its deadline is the
// server's method's too), or until it is closed. A stream whose server
// says nothing for WithStreamSilence fails with ErrServerSilent; one
// whose items come out of order, twice, or beyond their credit, or
// whose server's credit queue is gone, fails with ErrStreamBroken. A
// stream holds one of WithMaxInFlight's slots while it runs. The caller
// must Close the stream it opened (StreamOf does).
func (c *Client) InvokeStream(ctx context.Context, req Request) (ClientStream, error) {
	req.Mode = Stream
	st, err := chainStreamClient(c.cfg.streamClientInterceptors, c.openStream)(ctx, &req)
	return st, failed(&req, err)
}

// clientStream is a stream as its caller reads it.
type clientStream struct {
	c        *Client
	req      Request
	o        *outgoing
	k        *channel            // the channel its request went on
	conf     amqpio.Confirmation // its request's confirmation, when confirmed
	confirm  <-chan struct{}     // conf's, until seen
	taken    time.Time           // when no server took it in time
	window   int64               // the items granted at a time
	next     int64               // the place of the next item
	granted  int64               // the server may send the items before this place
	items    []json.RawMessage   // of the last message, not yet read
	creditTo string              // the server's credit queue, once it said
	err      error               // what ended the stream: io.EOF when it ended well
	mu       sync.Mutex          // Close may come from another goroutine than Recv
	closed   bool
}

// openStream is InvokeStream past the interceptors.
func (c *Client) openStream(ctx context.Context, req *Request) (ClientStream, error) {
	if err := c.proto.ErrNoStreams(); err != nil {
		return nil, err
	}
	if err := capped(req); err != nil {
		return nil, err
	}
	if err := c.carriable(ctx, req); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	o := &outgoing{ctx: ctx, cancel: cancel, release: func() {}, reply: true, alone: true}
	o.refs.Store(1)
	deadline, _ := ctx.Deadline()
	taken := time.Now().Add(c.cfg.timeout)
	if !deadline.IsZero() && deadline.Before(taken) {
		taken = deadline
	}
	o.req = newOutRequest(ctx, req, deadline)
	o.req.Stream = c.cfg.streamWindow
	o.expires = taken
	// Opening it (a slot, a session, the broker's leave to publish) waits
	// no longer than a server may take to take it.
	opening, opened := context.WithDeadline(ctx, taken)
	defer opened()
	o.ctx = opening
	if c.inFlight != nil {
		select {
		case c.inFlight <- struct{}{}:
			o.release = func() { <-c.inFlight }
		case <-opening.Done():
			o.end(c)
			return nil, fmt.Errorf("waiting for one of %d in-flight slots: %w", cap(c.inFlight), opening.Err())
		case <-c.done:
			o.end(c)
			return nil, ErrClosed
		}
	}
	key := routingKey(&req.Target)
	k, confirm, err := c.send(o, true, c.callsTo(key), key)
	o.ctx = ctx
	if err != nil {
		o.end(c)
		return nil, err
	}
	w := int64(c.cfg.streamWindow)
	return &clientStream{c: c, req: *req, o: o, k: k, conf: confirm, confirm: confirmed(confirm), taken: taken, window: w, granted: w}, nil
}

func (st *clientStream) Recv(item any) error {
	if st.err != nil {
		return st.err
	}
	if err := st.recv(item); err != nil {
		if err != io.EOF {
			err = failed(&st.req, err)
		}
		st.err = err
		st.Close()
		return err
	}
	return nil
}

func (st *clientStream) recv(item any) error {
	for len(st.items) == 0 {
		r, err := st.wait()
		if err != nil {
			return err
		}
		if err := st.read(r); err != nil {
			return err
		}
	}
	raw := st.items[0]
	st.items[0] = nil
	st.items = st.items[1:]
	st.next++
	if st.granted-st.next <= st.window/2 {
		st.grant()
	}
	if err := json.Unmarshal(raw, item); err != nil {
		return fmt.Errorf("%w: item %d: %v", ErrMalformedReply, st.next-1, err)
	}
	return nil
}

// read takes in r, the next message of the stream.
func (st *clientStream) read(r *wire.Reply) error {
	c := st.c
	switch r.Kind {
	case wire.Final: // a reply, not a stream: the server refused it, or serves no streams
		if err := decodeReply(c.proto, nil, r, nil, st.req.Service); err != nil {
			return err
		}
		return fmt.Errorf("%w: the server answered with one reply, not a stream", ErrStreamBroken)
	case wire.Items, wire.End:
	default:
		return fmt.Errorf("%w: a message of kind %d", ErrStreamBroken, r.Kind)
	}
	switch {
	case st.creditTo == "":
		st.creditTo = r.CreditTo
	case r.CreditTo != st.creditTo:
		return fmt.Errorf("%w: a message from another server's credit queue (%s, not %s)", ErrStreamBroken, wire.Clip(r.CreditTo), wire.Clip(st.creditTo))
	}
	if r.Seq != st.next {
		return fmt.Errorf("%w: item %d came where item %d was due", ErrStreamBroken, r.Seq, st.next)
	}
	if r.Kind == wire.End {
		if err := decodeReply(c.proto, nil, r, nil, st.req.Service); err != nil {
			return err
		}
		return io.EOF
	}
	items, err := c.proto.Streams.SplitItems(r)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrMalformedReply, err)
	}
	if r.Seq+int64(len(items)) > st.granted {
		return fmt.Errorf("%w: the server sent items up to %d, beyond its credit of %d", ErrStreamBroken, r.Seq+int64(len(items)), st.granted)
	}
	st.items = items
	return nil
}

// wait waits for the next message of the stream.
func (st *clientStream) wait() (*wire.Reply, error) {
	c, o := st.c, st.o
	p := o.pending
	lost := o.sess.lost
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	take := func() (*wire.Reply, error, bool) {
		r, ok, overrun := p.stream.take()
		switch {
		case ok:
			return &r, nil, true
		case overrun:
			return nil, fmt.Errorf("%w: the server sent more than its credit", ErrStreamBroken), true
		}
		return nil, nil, false
	}
	// A credit lost on its way (its channel closed under it, for another
	// request's refusal) would leave the server waiting and beating, and
	// this reader waiting: while it waits, the last credit goes again each
	// two beats. Credits say a place, not an amount: one twice is one.
	var again <-chan time.Time
	if st.granted > st.window {
		tick := time.NewTicker(2 * streamBeat)
		defer tick.Stop()
		again = tick.C
	}
	for {
		if r, err, ok := take(); ok {
			return r, err
		}
		// Silence is measured from the last word of the server, which the
		// replies' reader notes, however long this reader took to ask.
		var silent time.Duration
		if heard := p.heard.Load(); heard == 0 { // a server that took it by then says so within a beat
			silent = time.Until(st.taken.Add(c.cfg.streamSilence))
		} else {
			silent = time.Until(time.Unix(0, heard).Add(c.cfg.streamSilence))
		}
		timer.Reset(max(silent, 0))
		select {
		case <-p.stream.ready:
		case <-again:
			st.credit()
		case r := <-p.result:
			if errors.Is(r.err, ErrStreamBroken) { // a credit came back: the server is gone, its last words may be on their way
				select {
				case <-p.stream.ready:
					if r, err, ok := take(); ok {
						return r, err
					}
				case <-time.After(200 * time.Millisecond):
				}
			}
			return &r.reply, r.err
		case <-timer.C:
			if r, err, ok := take(); ok {
				return r, err
			}
			select {
			case r := <-p.result:
				return &r.reply, r.err
			default:
			}
			if p.heard.Load() == 0 {
				return nil, fmt.Errorf("%w: no server took the stream by %s", context.DeadlineExceeded, st.taken.Format(time.RFC3339Nano))
			}
			if time.Since(time.Unix(0, p.heard.Load())) < c.cfg.streamSilence {
				continue // a beat came as the timer fired
			}
			return nil, fmt.Errorf("%w: nothing from the stream's server for %v", ErrServerSilent, c.cfg.streamSilence)
		case <-st.confirm:
			st.confirm = nil
			if conf := st.confirmation(); conf != nil {
				return nil, conf
			}
		case <-lost:
			if r, err, ok := take(); ok {
				return r, err
			}
			select {
			case r := <-p.result:
				return &r.reply, r.err
			default:
			}
			return nil, ErrConnectionLost
		case <-o.ctx.Done():
			return nil, o.ctx.Err()
		case <-c.done:
			return nil, ErrClosed
		}
	}
}

// confirmation returns why the broker refused the stream's request, or
// nil when it took it (or a refusal of access, which afterRefusal
// settles, closed its channel).
func (st *clientStream) confirmation() error {
	if st.conf == nil || st.conf.Acked() || st.k.refusal() != nil {
		return nil
	}
	return refusedBy(st.k, st.c.cfg.exchange, st.o.pending.key)
}

// grant grants the server more items: up to a window past what was read.
func (st *clientStream) grant() {
	if st.creditTo == "" {
		return
	}
	st.granted = st.next + st.window
	st.o.pending.stream.granted.Store(st.granted)
	st.credit()
}

// credit sends the server the stream's credit.
func (st *clientStream) credit() {
	var pub amqp.Publishing
	st.c.proto.Streams.EncodeCredit(&pub, st.o.req.MsgID, st.granted)
	st.control(st.o.ctx, pub)
}

// control publishes pub, a credit or a cancellation, to the stream's
// server, through the request exchange, with ctx bounding a wait while
// the broker blocks publishers. One that comes back unroutable (its
// credit queue is gone) ends the stream with ErrStreamBroken; one the
// broker refuses (a permission) with ErrAccessRefused, as a request.
func (st *clientStream) control(ctx context.Context, pub amqp.Publishing) {
	s, p := st.o.sess, st.o.pending
	if st.c.refused.check(st.c.cfg.exchange, st.creditTo) != nil || s.waitUnblocked(ctx) != nil {
		return // refused a moment ago (the stream failed then), or the stream's end, or its loss, says why
	}
	pub.UserId = s.userID()
	p.creditKey.Store(&st.creditTo)
	if k, err := s.callsChannel(); err == nil {
		k.publish(ctx, st.c.cfg.exchange, st.creditTo, pub, p) // a failure is the session's: its loss ends the stream
	}
}

// Close ends the stream: when it has not ended, its server is told to
// stop, and the stream's resources go.
func (st *clientStream) Close() {
	st.mu.Lock()
	closed := st.closed
	st.closed = true
	st.mu.Unlock()
	if closed {
		return
	}
	if st.creditTo == "" { // no item came yet: a beat may have said where the server is
		if to := st.o.pending.creditTo.Load(); to != nil {
			st.creditTo = *to
		}
	}
	if st.err != io.EOF && st.creditTo != "" && !errors.Is(st.err, ErrAccessRefused) { // told even when the stream's context ended, which is why it closes
		st.c.cancelStream(st.o.sess, st.o.req.MsgID, st.creditTo)
	}
	st.o.end(st.c)
}

// streamMessage hands r, a message of a stream, to its reader: items, a
// beat (items without any), or its end. A message of a stream nobody
// reads any more (its caller gave up before its server first said where
// its credits go) tells the server to stop.
func (c *Client) streamMessage(r *wire.Reply) {
	c.mu.Lock()
	p := c.pending[r.ID]
	c.mu.Unlock()
	if p == nil {
		if r.Kind == wire.Items && r.CreditTo != "" {
			c.abandoned(r.ID, r.CreditTo)
		}
		return
	}
	p.heard.Store(time.Now().UnixNano())
	if r.CreditTo != "" && p.creditTo.Load() == nil {
		to := r.CreditTo
		p.creditTo.Store(&to)
	}
	if r.Kind == wire.Items && len(r.Body) == 2 { // [], a beat
		return
	}
	if p.stream == nil || !p.stream.put(r) { // beyond its credit: the reader finds the gap
		c.throttle.warn(c.cfg.logger, "amqprpc: dropping a stream's items beyond its credit", "correlation_id", wire.Clip(r.ID))
	}
}

// abandoned tells the server of stream id, whose caller gave up, to stop
// (once a second: the messages in flight find it told), from a goroutine of its own,
// as the replies' reader must not wait for the broker.
func (c *Client) abandoned(id, creditTo string) {
	c.abandonMu.Lock()
	if c.abandonedIDs == nil || len(c.abandonedIDs) > 1024 {
		c.abandonedIDs = make(map[string]time.Time)
	}
	told := time.Since(c.abandonedIDs[id]) < time.Second // told, and not long ago: its cancel may be on its way
	if !told {
		c.abandonedIDs[id] = time.Now()
	}
	c.abandonMu.Unlock()
	if told {
		return
	}
	c.mu.Lock()
	s := c.sess
	c.mu.Unlock()
	if s != nil {
		c.cancelStream(s, id, creditTo)
	}
}

// cancelStream tells the server of stream id, whose credit queue is
// creditTo, to stop, on session s, from a goroutine of its own: one that
// closes a stream, or reads replies, must not wait for the broker, which
// may block publishers for long.
func (c *Client) cancelStream(s *session, id, creditTo string) {
	if c.refused.check(c.cfg.exchange, creditTo) != nil {
		return // refused a moment ago: it would be again, and close the channel of others' calls
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		var pub amqp.Publishing
		c.proto.Streams.EncodeCancel(&pub, id)
		pub.UserId = s.userID()
		ctx, cancel := context.WithTimeout(c.ctx, c.cfg.timeout)
		defer cancel()
		if k, err := s.callsChannel(); err == nil && s.waitUnblocked(ctx) == nil {
			k.publish(ctx, c.cfg.exchange, creditTo, pub)
		}
	}()
}

// ErrStreamBroken is a stream that cannot go on: its items came out of
// order, twice, or beyond their credit, or its server's credit queue is
// gone (the server lost its connection, or died).
var ErrStreamBroken = errors.New("amqprpc: the stream broke")
