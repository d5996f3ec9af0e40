package runtime

import "context"

// Interceptors wrap requests on both sides, as gRPC's unary interceptors
// do: for logging, metrics, tracing, authentication, retries. Each gets
// the request and the next step, which it may call (once), skip, or call
// with another context; several given to one client or server run in the
// order given, the first outermost.

// ServerInfo describes the request that a server interceptor wraps.
type ServerInfo struct {
	// Topic and Server are the topic and the name of the server.
	Topic, Server string
	// Service is the interface the method belongs to.
	Service *ServiceDesc
	// Method is the method's wire name.
	Method string
	// ID is the request's id, the correlation id of its reply.
	ID string
	// Reply says that the caller waits for a reply: a call, not a cast.
	Reply bool
}

// Handler runs the method, or the next interceptor, with ctx: the
// request's context (its deadline, metadata, OsloContext).
type Handler func(ctx context.Context) (result any, err error)

// ServerInterceptor wraps each request a server runs. What it returns is
// what the caller gets: a result, or an error mapped as a method's.
type ServerInterceptor func(ctx context.Context, info *ServerInfo, next Handler) (result any, err error)

// Invoke sends req as Client.Invoke does (or, for CallAll, as
// Client.InvokeAll does), and decodes the reply into reply.
type Invoke func(ctx context.Context, req *Request, reply any) error

// ClientInterceptor wraps each request a client sends: its Invoke, and
// its InvokeAll (Gather), for which req.Mode is CallAll and reply is nil.
// Metadata it adds to ctx (WithMetadata) travels with the request.
type ClientInterceptor func(ctx context.Context, req *Request, reply any, next Invoke) error

// WithServerInterceptors adds interceptors that wrap each request a
// server runs. Server only.
func WithServerInterceptors(in ...ServerInterceptor) ServerOption {
	return serverOption(func(c *options) { c.serverInterceptors = append(c.serverInterceptors, in...) })
}

// WithClientInterceptors adds interceptors that wrap each request a
// client sends. Client only.
func WithClientInterceptors(in ...ClientInterceptor) ClientOption {
	return clientOption(func(c *options) { c.clientInterceptors = append(c.clientInterceptors, in...) })
}

// chainServer makes one interceptor of several, the first outermost; nil
// for none.
func chainServer(in []ServerInterceptor) ServerInterceptor {
	switch len(in) {
	case 0:
		return nil
	case 1:
		return in[0]
	}
	return func(ctx context.Context, info *ServerInfo, next Handler) (any, error) {
		return in[0](ctx, info, func(ctx context.Context) (any, error) {
			return chainServer(in[1:])(ctx, info, next)
		})
	}
}

// chainClient makes one Invoke of the interceptors around last, the first
// outermost.
func chainClient(in []ClientInterceptor, last Invoke) Invoke {
	for i := len(in) - 1; i >= 0; i-- {
		next, icpt := last, in[i]
		last = func(ctx context.Context, req *Request, reply any) error { return icpt(ctx, req, reply, next) }
	}
	return last
}

// chainStreamServer makes one stream interceptor of several, the first
// outermost; nil for none.
func chainStreamServer(in []StreamServerInterceptor) StreamServerInterceptor {
	switch len(in) {
	case 0:
		return nil
	case 1:
		return in[0]
	}
	return func(ctx context.Context, info *ServerInfo, next StreamHandler) (Items, error) {
		return in[0](ctx, info, func(ctx context.Context) (Items, error) {
			return chainStreamServer(in[1:])(ctx, info, next)
		})
	}
}

// chainStreamClient makes one Streamer of the stream interceptors around
// last, the first outermost.
func chainStreamClient(in []StreamClientInterceptor, last Streamer) Streamer {
	for i := len(in) - 1; i >= 0; i-- {
		next, icpt := last, in[i]
		last = func(ctx context.Context, req *Request) (ClientStream, error) { return icpt(ctx, req, next) }
	}
	return last
}
