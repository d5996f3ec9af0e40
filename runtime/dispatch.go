package runtime

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"

	"github.com/amqprpc/amqprpc/describe"
	"github.com/amqprpc/amqprpc/internal/wire"
)

// services is what a server serves, and how it calls a method for a
// request: the method table, the decoding of arguments, the interceptors,
// and the mapping of what a method returns or panics with to the error
// sent back. A Server serves a broker's requests with it, and a Local
// (in memory) its callers', the same way.
type services struct {
	topic, server string
	finder        wire.Finder // the protocol's rules
	log           *slog.Logger
	intercept     ServerInterceptor // the chain of WithServerInterceptors; nil for none
	// streamIntercept is the chain of WithStreamServerInterceptors; nil for none.
	streamIntercept StreamServerInterceptor
	throttle        throttle   // of log lines about one message
	gate            callerGate // who may call (WithAnonymousCallers, WithAuthorization)

	mu       sync.Mutex
	methods  map[string]method // by wire name; read-only once sealed
	services []*wire.Service   // every service registered, for the finder
	sealed   bool
	streams  bool // one of the methods is a stream
}

type method struct {
	desc    *ServiceDesc
	service *wire.Service
	handler MethodHandler
	impl    any
	noCtx   bool // the method ignores its context
	stream  bool // it sends a stream of items (Stream)
}

// describer is the service of describe.Request, which every server
// has: a request for it goes through the server's interceptors as any
// other, so that one can refuse it.
var describer = &ServiceDesc{ServiceName: "amqprpc"}

// RegisterService registers impl to serve the methods of desc. Generated
// Register<Interface>Server functions call it with an impl of the right
// type. It panics if a method of the same wire name is already registered
// or if the server serves already, as these are programming errors.
func (sv *services) RegisterService(desc *ServiceDesc, impl any) {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	if sv.sealed {
		panic(fmt.Sprintf("amqprpc: RegisterService(%s) after Serve", desc.ServiceName))
	}
	if impl == nil {
		panic(fmt.Sprintf("amqprpc: RegisterService(%s) with a nil implementation", desc.ServiceName))
	}
	if _, _, err := wire.ParseVersion(desc.Version); err != nil {
		panic(fmt.Sprintf("amqprpc: RegisterService(%s): %v", desc.ServiceName, err))
	}
	if sv.methods == nil {
		sv.methods = make(map[string]method)
	}
	svc := &wire.Service{Name: desc.ServiceName, Version: desc.Version, Namespace: desc.Namespace}
	for _, m := range desc.Methods {
		if prev, ok := sv.methods[m.Name]; ok {
			panic(fmt.Sprintf("amqprpc: method %q of %s is already registered by %s", m.Name, desc.ServiceName, prev.desc.ServiceName))
		}
		sv.methods[m.Name] = method{desc: desc, service: svc, handler: m.Handler, impl: impl, noCtx: m.IgnoresContext, stream: m.Mode == Stream}
		sv.streams = sv.streams || m.Mode == Stream
	}
	sv.services = append(sv.services, svc)
}

// seal ends registration: the method table is read without a lock from
// then on.
func (sv *services) seal() {
	sv.mu.Lock()
	sv.sealed = true
	sv.mu.Unlock()
}

// lookup returns the method req names, or the failure to answer with.
func (sv *services) lookup(req *wire.In) (method, *Error) {
	if req.Method == describe.Request {
		return method{desc: describer, handler: func(_ any, ctx context.Context, _ func(any) error) (any, error) {
			return sv.describe(ctx)
		}}, nil
	}
	m, ok := sv.methods[req.Method]
	var found *wire.Service
	if ok {
		found = m.service
	}
	if f := sv.finder.Find(sv.topic, found, sv.services, req); f != nil {
		return m, remoteError(f, nil, nil)
	}
	return m, nil
}

// serviceOf returns the service of the method named method, describer for
// describe.Request, and nil for none the server has.
func (sv *services) serviceOf(method string) *ServiceDesc {
	if method == describe.Request {
		return describer
	}
	return sv.methods[method].desc
}

// dispatch calls the method req names, with ctx as the parent of its
// context, and returns its result or the error to send back.
func (sv *services) dispatch(ctx context.Context, req *wire.In) (result any, failure *Error) {
	inv, failure := sv.prepare(ctx, req, false)
	if failure != nil {
		return nil, failure
	}
	defer inv.cancel()
	defer sv.recovered(req, &failure)
	var err error
	m := inv.m
	if sv.intercept == nil {
		result, err = m.handler(m.impl, inv.ctx, inv.dec)
	} else {
		info := &ServerInfo{Topic: sv.topic, Server: sv.server, Service: m.desc, Method: req.Method, ID: req.MsgID, Reply: req.Reply.OK()}
		result, err = sv.intercept(inv.ctx, info, func(ctx context.Context) (any, error) { return m.handler(m.impl, ctx, inv.dec) })
	}
	if failure := inv.failed(req, err); failure != nil {
		return nil, failure
	}
	return result, nil
}

// dispatchStream calls the stream method req names, with ctx as the
// parent of its context, through the stream interceptors, and returns its
// items, the context they run in, which cancel ends, or the error to send
// back.
func (sv *services) dispatchStream(ctx context.Context, req *wire.In) (items Items, run context.Context, cancel context.CancelCauseFunc, failure *Error) {
	inv, failure := sv.prepare(ctx, req, true)
	if failure != nil {
		return nil, nil, nil, failure
	}
	run, stop := context.WithCancelCause(inv.ctx)
	end := func(cause error) { stop(cause); inv.cancel() }
	defer func() {
		if failure != nil {
			end(nil)
		}
	}()
	defer sv.recovered(req, &failure)
	m := inv.m
	handler := func(ctx context.Context) (Items, error) {
		result, err := m.handler(m.impl, ctx, inv.dec)
		if err != nil {
			return nil, err
		}
		items, ok := result.(Items)
		if !ok {
			return nil, fmt.Errorf("the handler of stream %q returned %T, not runtime.Items", req.Method, result)
		}
		return items, nil
	}
	var err error
	if sv.streamIntercept == nil {
		items, err = handler(run)
	} else {
		info := &ServerInfo{Topic: sv.topic, Server: sv.server, Service: m.desc, Method: req.Method, ID: req.MsgID, Reply: true}
		items, err = sv.streamIntercept(run, info, handler)
	}
	if failure := inv.failed(req, err); failure != nil {
		return nil, nil, nil, failure
	}
	if items == nil {
		items = ItemsOf[any](nil)
	}
	return items, run, end, nil
}

// invocation is a request about to run its method: the method, and the
// context and the decoder of arguments it runs with.
type invocation struct {
	m         method
	ctx       context.Context
	cancel    context.CancelFunc
	dec       func(args any) error
	decodeErr error
}

// prepare checks who calls, finds the method req names (a stream, or
// not), and makes its context: the request's deadline, metadata, caller
// and oslo.messaging context, under ctx.
func (sv *services) prepare(ctx context.Context, req *wire.In, stream bool) (*invocation, *Error) {
	// Who calls is checked first: a caller refused learns nothing of the
	// methods the server has.
	id := identityOf(req)
	if failure := sv.admit(id, req); failure != nil {
		return nil, failure
	}
	m, failure := sv.lookup(req)
	if failure != nil {
		return nil, failure
	}
	switch {
	case m.stream && !stream:
		return nil, &Error{Code: CodeFailedPrecondition, Message: fmt.Sprintf("%q sends a stream of items: a stream client calls it (mode stream)", req.Method)}
	case stream && !m.stream:
		return nil, &Error{Code: CodeFailedPrecondition, Message: fmt.Sprintf("%q is not a stream: call it for one reply", req.Method)}
	}
	inv := &invocation{m: m, ctx: ctx, cancel: func() {}}
	withCtx := !m.noCtx || sv.intercept != nil || stream
	if req.Context != nil && withCtx {
		inv.ctx = WithOsloContext(inv.ctx, req.Context)
	}
	if req.Meta != nil && withCtx {
		inv.ctx = context.WithValue(inv.ctx, incomingKey{}, Metadata(req.Meta))
	}
	if id != (Identity{}) && withCtx {
		inv.ctx = context.WithValue(inv.ctx, callerKey{}, &id)
	}
	if !req.Deadline.IsZero() && withCtx {
		inv.ctx, inv.cancel = context.WithDeadline(inv.ctx, req.Deadline)
	}
	inv.dec = func(args any) error {
		inv.decodeErr = decodeArgs(req.Args, args)
		return inv.decodeErr
	}
	return inv, nil
}

// failed returns the failure to answer with when the method returned err,
// or its arguments did not decode; nil for none.
func (inv *invocation) failed(req *wire.In, err error) *Error {
	switch {
	case inv.decodeErr != nil: // as a Python method given the wrong keyword arguments
		return &Error{Code: CodeInvalidArgument, Message: fmt.Sprintf("arguments of %q: %s", req.Method, wire.ClipMessage(inv.decodeErr.Error())),
			Module: "builtins", Class: "TypeError"}
	case err != nil:
		return toError(err, inv.m.desc)
	}
	return nil
}

// recovered turns a panic of the method req names into the failure it
// answers with, and logs it.
func (sv *services) recovered(req *wire.In, failure **Error) {
	if p := recover(); p != nil {
		sv.throttle.methodError(sv.log, req.Method, "amqprpc: method panicked", "method", req.Method, "correlation_id", req.MsgID, "panic", p, "stack", string(debug.Stack()))
		*failure = &Error{Code: CodeInternal, Message: fmt.Sprintf("method %q panicked", req.Method)}
	}
}
