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
	throttle      throttle          // of log lines about one message
	gate          callerGate        // who may call (WithAnonymousCallers, WithAuthorization)

	mu       sync.Mutex
	methods  map[string]method // by wire name; read-only once sealed
	services []*wire.Service   // every service registered, for the finder
	sealed   bool
}

type method struct {
	desc    *ServiceDesc
	service *wire.Service
	handler MethodHandler
	impl    any
	noCtx   bool // the method ignores its context
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
		sv.methods[m.Name] = method{desc: desc, service: svc, handler: m.Handler, impl: impl, noCtx: m.IgnoresContext}
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
	defer func() {
		if p := recover(); p != nil {
			sv.throttle.methodError(sv.log, req.Method, "amqprpc: method panicked", "method", req.Method, "correlation_id", req.MsgID, "panic", p, "stack", string(debug.Stack()))
			result, failure = nil, &Error{Code: CodeInternal, Message: fmt.Sprintf("method %q panicked", req.Method)}
		}
	}()
	withCtx := !m.noCtx || sv.intercept != nil
	if req.Context != nil && withCtx {
		ctx = WithOsloContext(ctx, req.Context)
	}
	if req.Meta != nil && withCtx {
		ctx = context.WithValue(ctx, incomingKey{}, Metadata(req.Meta))
	}
	if id != (Identity{}) && withCtx {
		ctx = context.WithValue(ctx, callerKey{}, &id)
	}
	if !req.Deadline.IsZero() && withCtx {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, req.Deadline)
		defer cancel()
	}
	var decodeErr error
	dec := func(args any) error {
		decodeErr = decodeArgs(req.Args, args)
		return decodeErr
	}
	var err error
	if sv.intercept == nil {
		result, err = m.handler(m.impl, ctx, dec)
	} else {
		info := &ServerInfo{Topic: sv.topic, Server: sv.server, Service: m.desc, Method: req.Method, ID: req.MsgID, Reply: req.Reply.OK()}
		result, err = sv.intercept(ctx, info, func(ctx context.Context) (any, error) { return m.handler(m.impl, ctx, dec) })
	}
	switch {
	case decodeErr != nil: // as a Python method given the wrong keyword arguments
		return nil, &Error{Code: CodeInvalidArgument, Message: fmt.Sprintf("arguments of %q: %s", req.Method, wire.ClipMessage(decodeErr.Error())),
			Module: "builtins", Class: "TypeError"}
	case err != nil:
		return nil, toError(err, m.desc)
	}
	return result, nil
}
