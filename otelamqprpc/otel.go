// Package otelamqprpc traces and measures amqprpc clients and servers with
// OpenTelemetry, as interceptors: it is a package of its own so that
// programs that do not use OpenTelemetry do not compile it.
//
//	c, err := runtime.Dial(url, runtime.WithClientInterceptors(otelamqprpc.ClientInterceptor()))
//	srv := runtime.NewServer(url, "calc", runtime.WithServerInterceptors(otelamqprpc.ServerInterceptor()))
//
// Traces follow a request from its caller to its server: the client
// injects the W3C trace context (traceparent, tracestate) into the
// request's metadata, which travels as AMQP headers, and the server's span
// is its child. Spans are named and attributed by OpenTelemetry's semantic
// conventions for RPC and messaging: "<service>/<method>", kind client
// and server for calls, producer and consumer for casts and fanouts (the
// consumer a child of the producer), with rpc.system "amqprpc",
// rpc.service, rpc.method, messaging.system "rabbitmq",
// messaging.destination.name (the exchange), the routing key,
// messaging.operation.type, messaging.message.id (server side) and, on
// failure, error.type (the error's Code) and an error status.
//
// Metrics, per side: rpc.client.call.duration and rpc.server.call.duration
// (seconds, by rpc.method and error.type), amqprpc.client.calls_in_flight
// and amqprpc.server.calls_in_flight, and amqprpc.client.failures and
// amqprpc.server.failures by error.type. The providers are the global
// ones unless given.
package otelamqprpc

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/amqprpc/amqprpc/runtime"
)

// scope is the instrumentation scope of the tracer and the meter.
const scope = "github.com/amqprpc/amqprpc/otelamqprpc"

// Option configures the interceptors.
type Option func(*config)

type config struct {
	tracers    trace.TracerProvider
	meters     metric.MeterProvider
	propagator propagation.TextMapPropagator
	exchange   string
}

// WithTracerProvider sets where spans go. Default: otel.GetTracerProvider().
func WithTracerProvider(tp trace.TracerProvider) Option { return func(c *config) { c.tracers = tp } }

// WithMeterProvider sets where metrics go. Default: otel.GetMeterProvider().
func WithMeterProvider(mp metric.MeterProvider) Option { return func(c *config) { c.meters = mp } }

// WithPropagator sets how the trace context travels in metadata.
// Default: W3C trace context (traceparent, tracestate).
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(c *config) { c.propagator = p }
}

// WithExchange names the exchange requests go to, for the
// messaging.destination.name attribute, when it is not
// runtime.DefaultExchange (runtime.WithExchange).
func WithExchange(name string) Option { return func(c *config) { c.exchange = name } }

func newConfig(opts []Option) *config {
	c := &config{tracers: otel.GetTracerProvider(), meters: otel.GetMeterProvider(),
		propagator: propagation.TraceContext{},
		exchange:   runtime.DefaultExchange}
	for _, o := range opts {
		o(c)
	}
	return c
}

// instruments are one side's metrics.
type instruments struct {
	duration metric.Float64Histogram
	inFlight metric.Int64UpDownCounter
	failures metric.Int64Counter
	sets     sync.Map // attribute sets, made once: "method" or "method\x00error.type" -> metric.MeasurementOption
	kept     atomic.Int32
}

// attrs returns the attributes of a measurement of method with outcome
// errType ("" for success), made once for each: making a set sorts and
// allocates, which would cost more than the measurement.
func (in *instruments) attrs(method, errType string) metric.MeasurementOption {
	key := method + "\x00" + errType
	if o, ok := in.sets.Load(key); ok {
		return o.(metric.MeasurementOption)
	}
	kvs := []attribute.KeyValue{attribute.String("rpc.method", method)}
	if errType != "" {
		kvs = append(kvs, semconv.ErrorTypeKey.String(errType))
	}
	o := metric.WithAttributeSet(attribute.NewSet(kvs...))
	if in.kept.Add(1) <= maxSets { // bounded, whatever names callers send
		in.sets.Store(key, o)
	}
	return o
}

// maxSets bounds the attribute sets an interceptor keeps.
const maxSets = 4096

func newInstruments(m metric.Meter, side string) *instruments {
	in := new(instruments)
	in.duration, _ = m.Float64Histogram("rpc."+side+".call.duration", metric.WithUnit("s"),
		metric.WithDescription("How long amqprpc "+side+" requests took, by method and outcome."),
		metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
	in.inFlight, _ = m.Int64UpDownCounter("amqprpc."+side+".calls_in_flight", metric.WithDescription("Requests in flight."))
	in.failures, _ = m.Int64Counter("amqprpc."+side+".failures", metric.WithDescription("Requests that failed, by error.type."))
	return in
}

// spanAttrs are the attributes of a span of a request for method of
// service, routed with key, and more.
func (c *config) spanAttrs(service, method, key string, more ...attribute.KeyValue) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 6+len(more))
	attrs = append(attrs,
		attribute.String("rpc.system", "amqprpc"), semconv.RPCService(service), attribute.String("rpc.method", method),
		semconv.MessagingSystemRabbitMQ, semconv.MessagingDestinationName(c.exchange), semconv.MessagingRabbitMQDestinationRoutingKey(key))
	return append(attrs, more...)
}

// observe runs a request for method, counted in flight while it runs, and
// records its duration and its outcome (typeOf names a failure's) on the
// metrics and on span.
func (in *instruments) observe(ctx context.Context, span trace.Span, method string, typeOf func(error) string, run func() error) error {
	ok := in.attrs(method, "")
	in.inFlight.Add(ctx, 1, ok)
	start := time.Now()
	err := run()
	in.inFlight.Add(ctx, -1, ok)
	outcome := ok
	if err != nil {
		et := typeOf(err)
		outcome = in.attrs(method, et)
		span.SetAttributes(semconv.ErrorTypeKey.String(et))
		span.SetStatus(codes.Error, err.Error())
		in.failures.Add(ctx, 1, outcome)
	}
	in.duration.Record(ctx, time.Since(start).Seconds(), outcome)
	return err
}

// carrier is runtime.Metadata as a propagation carrier.
type carrier runtime.Metadata

func (c carrier) Get(key string) string { return c[key] }
func (c carrier) Set(key, value string) { c[key] = value }
func (c carrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// errorType is the error.type of err: the *runtime.Error's code, or a
// name for a transport error.
func errorType(err error) string {
	var rerr *runtime.Error
	switch {
	case errors.As(err, &rerr):
		return string(rerr.Code)
	case errors.Is(err, context.DeadlineExceeded):
		return string(runtime.CodeDeadlineExceeded)
	case errors.Is(err, context.Canceled):
		return string(runtime.CodeCanceled)
	case errors.Is(err, runtime.ErrNoServer):
		return "no_server"
	case errors.Is(err, runtime.ErrConnectionLost):
		return "connection_lost"
	}
	return semconv.ErrorTypeOther.Value.AsString()
}

func serviceName(d *runtime.ServiceDesc) string {
	if d == nil {
		return ""
	}
	return d.ServiceName
}

// ClientInterceptor returns an interceptor that traces and measures each
// request a client sends, and sends the trace context with it.
func ClientInterceptor(opts ...Option) runtime.ClientInterceptor {
	c := newConfig(opts)
	tracer := c.tracers.Tracer(scope)
	in := newInstruments(c.meters.Meter(scope), "client")
	return func(ctx context.Context, req *runtime.Request, reply any, next runtime.Invoke) error {
		kind := trace.SpanKindClient
		if req.Mode == runtime.Cast || req.Mode == runtime.Fanout {
			kind = trace.SpanKindProducer
		}
		key := req.Topic
		if req.Server != "" {
			key += "." + req.Server
		}
		service := serviceName(req.Service)
		ctx, span := tracer.Start(ctx, service+"/"+req.Method, trace.WithSpanKind(kind), trace.WithAttributes(
			c.spanAttrs(service, req.Method, key, semconv.MessagingOperationTypeSend, attribute.String("amqprpc.mode", req.Mode.String()))...))
		defer span.End()
		md := runtime.Metadata{}
		c.propagator.Inject(ctx, carrier(md))
		ctx = runtime.WithMetadata(ctx, md)
		return in.observe(ctx, span, req.Method, errorType, func() error { return next(ctx, req, reply) })
	}
}

// ServerInterceptor returns an interceptor that traces and measures each
// request a server runs, as the child of its caller's span.
func ServerInterceptor(opts ...Option) runtime.ServerInterceptor {
	c := newConfig(opts)
	tracer := c.tracers.Tracer(scope)
	in := newInstruments(c.meters.Meter(scope), "server")
	return func(ctx context.Context, info *runtime.ServerInfo, next runtime.Handler) (any, error) {
		ctx = c.propagator.Extract(ctx, carrier(runtime.IncomingMetadata(ctx)))
		kind := trace.SpanKindServer
		if !info.Reply {
			kind = trace.SpanKindConsumer
		}
		service := serviceName(info.Service)
		ctx, span := tracer.Start(ctx, service+"/"+info.Method, trace.WithSpanKind(kind), trace.WithAttributes(
			c.spanAttrs(service, info.Method, info.Topic, semconv.MessagingOperationTypeProcess,
				semconv.MessagingMessageID(info.ID), attribute.String("amqprpc.server", info.Server))...))
		defer span.End()
		var result any
		err := in.observe(ctx, span, info.Method, serverErrorType, func() (err error) {
			result, err = next(ctx)
			return err
		})
		return result, err
	}
}

// serverErrorType is the code a method's error goes back with.
func serverErrorType(err error) string {
	if t := errorType(err); t != semconv.ErrorTypeOther.Value.AsString() {
		return t
	}
	return string(runtime.CodeUnknown)
}
