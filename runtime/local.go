package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/amqprpc/amqprpc/internal/wire"
	amqp "github.com/rabbitmq/amqp091-go"
)

// Local is a client and the servers of one topic in one process, without a
// broker: for unit tests of services and of the code that calls them. A
// request goes through what it goes through on a broker, but the network:
// the client's interceptors, the same JSON encoding of its arguments,
// metadata and deadline (amqprpc's protocol), the server's interceptors and
// dispatch, and the same encoding of the result or error back, so that
// declared errors, codes, versions and modes behave as they do against
// RabbitMQ. Calls to one server, casts, fanouts and gathers work; a
// request for a server no one registered fails with ErrNoServer.
//
//	l := runtime.NewLocal("calc")
//	calc.RegisterCalculatorServer(l.Server("a"), new(calc.Machine))
//	sum, err := calc.NewCalculatorClient(l, "calc").Add(ctx, 2, 3)
//
// Casts and fanouts run in goroutines of the Local; Close waits for them.
// The client options of Dial that apply are WithTimeout,
// WithClientInterceptors and WithMaxBodySize; the server options,
// WithServerInterceptors and WithLogger. A Local speaks amqprpc's protocol
// whatever the options say: WithOslo changes nothing.
type Local struct {
	topic  string
	cfg    config
	proto  *wire.Protocol // amqprpc's
	invoke Invoke         // through the client's interceptors

	mu      sync.Mutex
	servers []*localServer // in the order made
	next    atomic.Uint32  // round robin over servers for calls and casts
	closed  bool
	running sync.WaitGroup // casts and fanouts, and methods whose callers left
}

// localServer is one named server of a Local.
type localServer struct{ services }

// NewLocal returns a Local for topic.
func NewLocal(topic string, opts ...LocalOption) *Local {
	cfg := localConfig(opts)
	cfg.oslo = nil // a Local speaks amqprpc's protocol
	l := &Local{topic: topic, cfg: cfg, proto: wire.Amqprpc(wire.AmqprpcTopology{Exchange: DefaultExchange})}
	l.invoke = chainClient(l.cfg.clientInterceptors, l.send)
	return l
}

// Server returns the server named name, made on first use: register
// services with it. Requests to the topic go to each server in turn;
// those for a server by name (Target.Server) to it alone; fanouts and
// gathers to all.
func (l *Local) Server(name string) ServiceRegistrar {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.servers {
		if s.server == name {
			return s
		}
	}
	log := l.cfg.logger.With("topic", l.topic, "server", name)
	s := &localServer{services{topic: l.topic, server: name, finder: l.proto.Finder, log: log, intercept: chainServer(l.cfg.serverInterceptors), streamIntercept: chainStreamServer(l.cfg.streamServerInterceptors), gate: callerGate{refuseAnonymous: l.cfg.refuseAnonymous, policy: l.cfg.policy}}}
	l.servers = append(l.servers, s)
	return s
}

// RegisterService registers impl with the server named "local", so that a
// Local serves as a ServiceRegistrar itself.
func (l *Local) RegisterService(desc *ServiceDesc, impl any) {
	l.Server("local").RegisterService(desc, impl)
}

// Close waits for the casts and fanouts still running, and for methods
// whose callers gave up; requests made after it fail with ErrClosed.
func (l *Local) Close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.running.Wait()
	return nil
}

// Invoke sends req as Client.Invoke does.
func (l *Local) Invoke(ctx context.Context, req Request, reply any) error {
	return failed(&req, l.invoke(ctx, &req, reply))
}

// InvokeAll sends req to every server as Client.InvokeAll does.
func (l *Local) InvokeAll(ctx context.Context, req Request, want int, each func(server string, decode func(any) error)) error {
	req.Mode = CallAll
	gather := chainClient(l.cfg.clientInterceptors, func(ctx context.Context, req *Request, _ any) error {
		return l.gather(ctx, req, want, each)
	})
	return failed(&req, gather(ctx, &req, nil))
}

// send is Invoke past the client's interceptors.
func (l *Local) send(ctx context.Context, req *Request, reply any) error {
	ctx, cancel, err := l.start(ctx, req)
	defer cancel()
	if err != nil {
		return err
	}
	var to []*localServer
	switch req.Mode {
	case Call, Cast:
		to, err = l.pick(req.Server, false)
	case Fanout:
		to, err = l.pick(req.Server, req.Server == "")
	case Stream:
		return errors.New("amqprpc: a stream goes through InvokeStream")
	default:
		return fmt.Errorf("amqprpc: mode %s goes through InvokeAll", req.Mode)
	}
	if err != nil {
		return err
	}
	d, err := l.encode(ctx, req, req.Mode == Call)
	if err != nil {
		return err
	}
	if req.Mode != Call {
		for _, s := range to {
			l.run(func() { l.serve(s, d) })
		}
		return nil
	}
	replies := make(chan amqp.Delivery, 1)
	l.run(func() { replies <- l.serve(to[0], d) })
	select {
	case r := <-replies:
		return l.decode(&r, reply, req.Service)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// gather sends req to every server and hands each reply to each.
func (l *Local) gather(ctx context.Context, req *Request, want int, each func(string, func(any) error)) error {
	ctx, cancel, err := l.start(ctx, req)
	defer cancel()
	if err != nil {
		return err
	}
	to, err := l.pick("", true)
	if err != nil {
		return err
	}
	d, err := l.encode(ctx, req, true)
	if err != nil {
		return err
	}
	type named struct {
		server string
		reply  amqp.Delivery
	}
	replies := make(chan named, len(to))
	for _, s := range to {
		l.run(func() { replies <- named{s.server, l.serve(s, d)} })
	}
	for got := 0; got < len(to) && (want <= 0 || got < want); got++ {
		select {
		case r := <-replies:
			each(r.server, func(v any) error { return l.decode(&r.reply, v, req.Service) })
		case <-ctx.Done():
			if want > 0 {
				return fmt.Errorf("%d of %d replies: %w", got, want, ctx.Err())
			}
			return nil
		}
	}
	if want > len(to) {
		<-ctx.Done()
		return fmt.Errorf("%d of %d replies: %w", len(to), want, ctx.Err())
	}
	return nil
}

// start bounds ctx by the client's timeout and checks the version cap and
// whether the Local is closed.
func (l *Local) start(ctx context.Context, req *Request) (context.Context, context.CancelFunc, error) {
	cancel := context.CancelFunc(func() {})
	if _, ok := ctx.Deadline(); !ok {
		ctx, cancel = context.WithTimeout(ctx, l.cfg.timeout)
	}
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if closed {
		return ctx, cancel, ErrClosed
	}
	if err := capped(req); err != nil {
		return ctx, cancel, err
	}
	return ctx, cancel, ctx.Err()
}

// pick returns the servers a request goes to: the one named, or the next
// in turn, or all.
func (l *Local) pick(name string, all bool) ([]*localServer, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case name != "":
		for _, s := range l.servers {
			if s.server == name {
				return []*localServer{s}, nil
			}
		}
	case all && len(l.servers) > 0:
		return slices.Clone(l.servers), nil
	case len(l.servers) > 0:
		return []*localServer{l.servers[int(l.next.Add(1)-1)%len(l.servers)]}, nil
	}
	return nil, ErrNoServer
}

// encode makes the delivery a server would receive for req.
func (l *Local) encode(ctx context.Context, req *Request, reply bool) (amqp.Delivery, error) {
	deadline, _ := ctx.Deadline()
	r := newOutRequest(ctx, req, deadline)
	if reply {
		r.ReplyTo = "local"
	}
	pub := amqp.Publishing{UserId: l.cfg.userID.or("")}
	if err := l.proto.EncodeRequest(&pub, &r); err != nil {
		return amqp.Delivery{}, err
	}
	if err := tooLarge(pub.Body, l.cfg.maxBody); err != nil {
		return amqp.Delivery{}, err
	}
	return amqp.Delivery{ContentType: pub.ContentType, CorrelationId: pub.CorrelationId, ReplyTo: pub.ReplyTo, Headers: pub.Headers, UserId: pub.UserId, Body: pub.Body}, nil
}

// serve has s serve d and returns the reply it would publish.
func (l *Local) serve(s *localServer, d amqp.Delivery) amqp.Delivery {
	s.seal()
	var req wire.In
	var result any
	failure := (*Error)(nil)
	err := l.proto.DecodeRequest(&d, &req)
	req.User = d.UserId
	if err != nil {
		failure = &Error{Code: CodeMalformed, Message: err.Error()}
	} else if !req.Deadline.IsZero() && time.Now().After(req.Deadline) {
		failure = &Error{Code: CodeDeadlineExceeded, Message: "the request's deadline passed before it ran"}
	} else {
		result, failure = s.dispatch(context.Background(), &req)
	}
	pub := encodeReply(l.proto, &s.services, nil, &req, s.server, result, failure)
	if failure != nil && !req.Reply.OK() {
		s.throttle.warn(s.log, "amqprpc: request failed and names no reply path", "method", clip(req.Method), "correlation_id", req.MsgID, "error", failure)
	}
	return amqp.Delivery{ContentType: pub.ContentType, CorrelationId: pub.CorrelationId, Type: pub.Type, Headers: pub.Headers, Body: pub.Body}
}

// decode decodes the reply d as a client does.
func (l *Local) decode(d *amqp.Delivery, v any, svc *ServiceDesc) error {
	var err error
	decoded := false
	l.proto.SplitReplies(d, func(r *wire.Reply) {
		decoded = true
		err = decodeReply(l.proto, nil, r, v, svc)
	})
	if !decoded {
		return ErrMalformedReply
	}
	return err
}

// run runs f in a goroutine that Close waits for.
func (l *Local) run(f func()) {
	l.running.Add(1)
	go func() {
		defer l.running.Done()
		f()
	}()
}

var (
	_ Invoker          = (*Local)(nil)
	_ ServiceRegistrar = (*Local)(nil)
)

// InvokeStream opens a stream as Client.InvokeStream does. Its items
// are encoded and decoded as on the wire, one at a time: the method's
// iterator runs as its caller reads, which is all the flow control a
// stream in one process needs.
func (l *Local) InvokeStream(ctx context.Context, req Request) (ClientStream, error) {
	req.Mode = Stream
	st, err := chainStreamClient(l.cfg.streamClientInterceptors, l.openStream)(ctx, &req)
	return st, failed(&req, err)
}

// openStream is InvokeStream past the client's interceptors.
func (l *Local) openStream(ctx context.Context, req *Request) (ClientStream, error) {
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if err := capped(req); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	to, err := l.pick(req.Server, false)
	if err != nil {
		return nil, err
	}
	deadline, _ := ctx.Deadline()
	out := newOutRequest(ctx, req, deadline)
	out.ReplyTo, out.Stream = "local", l.cfg.streamWindow
	pub := amqp.Publishing{UserId: l.cfg.userID.or("")}
	if err := l.proto.EncodeRequest(&pub, &out); err != nil {
		return nil, err
	}
	if err := tooLarge(pub.Body, l.cfg.maxBody); err != nil {
		return nil, err
	}
	d := amqp.Delivery{ContentType: pub.ContentType, CorrelationId: pub.CorrelationId, ReplyTo: pub.ReplyTo, Headers: pub.Headers, UserId: pub.UserId, Body: pub.Body}
	s := to[0]
	s.seal()
	var in wire.In
	if err := l.proto.DecodeRequest(&d, &in); err != nil {
		return nil, &Error{Code: CodeMalformed, Message: err.Error()}
	}
	in.User = d.UserId
	items, run, stop, failure := s.dispatchStream(context.Background(), &in)
	if failure != nil {
		reply := encodeReply(l.proto, &s.services, nil, &in, "", nil, failure)
		return nil, l.decode(&amqp.Delivery{ContentType: reply.ContentType, CorrelationId: reply.CorrelationId, Type: reply.Type, Headers: reply.Headers, Body: reply.Body}, nil, req.Service)
	}
	unwatch := context.AfterFunc(ctx, func() { stop(context.Cause(ctx)) }) // the caller gave up: the method's context ends
	next, pull := iter.Pull2(items)
	return &localStream{ctx: ctx, run: run, s: s, desc: req.Service, method: req.Method, next: next, stop: func() {
		unwatch()
		stop(errCallerCancelled)
		pull()
	}}, nil
}

// localStream is a Local's stream as its caller reads it.
type localStream struct {
	ctx    context.Context // the caller's
	run    context.Context // the method's
	s      *localServer
	desc   *ServiceDesc
	method string
	next   func() (any, error, bool)
	stop   func()
	err    error
	once   sync.Once
}

func (st *localStream) Recv(item any) error {
	if st.err != nil {
		return st.err
	}
	st.err = st.recv(item)
	if st.err != nil {
		st.Close()
	}
	return st.err
}

func (st *localStream) recv(item any) (err error) {
	if err := st.ctx.Err(); err != nil {
		return err
	}
	defer func() {
		if p := recover(); p != nil { // the method's iterator panicked, as a server's would be logged and answered
			st.s.throttle.methodError(st.s.log, st.method, "amqprpc: stream panicked", "method", st.method, "panic", p)
			err = &Error{Code: CodeInternal, Message: fmt.Sprintf("stream %q panicked", st.method)}
		}
	}()
	v, ierr, ok := st.next()
	switch {
	case st.ctx.Err() != nil:
		return st.ctx.Err()
	case st.run.Err() != nil && (!ok || ierr != nil): // the method stopped as its context ended (its deadline): not an end of its own
		if f := cut(st.run); f != nil {
			return remoteError(f.failure(nil), st.desc, nil)
		}
		return st.run.Err()
	case !ok:
		return io.EOF
	case ierr != nil: // as the caller of a server would see it
		return remoteError(toError(ierr, st.desc).failure(nil), st.desc, nil)
	}
	raw, merr := json.Marshal(v)
	if merr != nil {
		return &Error{Code: CodeInternal, Message: fmt.Sprintf("an item of %q does not encode: %v", st.method, merr)}
	}
	if uerr := json.Unmarshal(raw, item); uerr != nil {
		return fmt.Errorf("%w: %v", ErrMalformedReply, uerr)
	}
	return nil
}

func (st *localStream) Close() { st.once.Do(st.stop) }

var _ StreamInvoker = (*Local)(nil)
