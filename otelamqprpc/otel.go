// Package otelamqprpc traces and measures amqprpc clients and servers with
// OpenTelemetry, as interceptors: it is a package of its own so that
// programs that do not use OpenTelemetry do not compile it.
//
//	c, err := runtime.Dial(url, runtime.WithClientInterceptors(otelamqprpc.ClientInterceptor()),
//		runtime.WithStreamClientInterceptors(otelamqprpc.StreamClientInterceptor()))
//	srv := runtime.NewServer(url, "calc", runtime.WithServerInterceptors(otelamqprpc.ServerInterceptor()),
//		runtime.WithStreamServerInterceptors(otelamqprpc.StreamServerInterceptor()))
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
// failure, error.type (the error's Code) and an error status. Attributes
// are set once the sampler has decided, on spans that record: a span
// sampled out costs its context and little else (a sampler sees a span's
// name and kind, not its attributes).
//
// A stream has one span a side, client and server, named and attributed
// as a call's (amqprpc.mode "stream" on the client's), from its opening
// to its end, with the number of its items in amqprpc.stream.items: those
// the caller read, those the method yielded. A stream that its caller
// stops early (a break, Close, a cancelled context) ends well on both
// sides.
//
// Metrics, per side: rpc.client.call.duration and rpc.server.call.duration
// (seconds, by rpc.method and error.type), amqprpc.client.calls_in_flight
// and amqprpc.server.calls_in_flight (by rpc.method, observed when the
// metrics are collected), and amqprpc.client.failures and
// amqprpc.server.failures by error.type. Methods past 4096 are counted
// together as rpc.method _OTHER, and error types past 64 for a
// method as _OTHER: names and codes that callers and servers send cannot
// grow the metrics without bound. A stream is measured as a call is: in
// flight, and its duration, from its opening to its end.
//
// What the runtime does besides calls, which no interceptor sees (requests
// dropped past their deadline, redeliveries, reconnections, batch sizes,
// rejected requests), it counts in Server.Stats and Client.Stats;
// ObserveServer and ObserveClient export those counts as metrics, read
// when the metrics are collected, at no cost per call.
//
// The providers are the global ones unless given.

package otelamqprpc

import (
	"context"
	"errors"
	"slices"
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
	failures metric.Int64Counter
	methods  sync.Map // method name -> *methodStats
	kept     atomic.Int32
	overflow *methodStats // methods past maxMethods
}

// methodStats is what the instruments keep for one method: its attribute
// set, made once (making one sorts and allocates, which would cost more
// than a measurement), and its calls in flight, counted here and read when
// the metrics are collected rather than sent to the SDK twice a call.
type methodStats struct {
	ok       metric.MeasurementOption // rpc.method
	attrs    attribute.Set
	inFlight atomic.Int64
	failed   sync.Map // error.type -> metric.MeasurementOption
	types    atomic.Int32
	span     atomic.Pointer[spanTemplate] // the last one made for the method
}

// spanTemplate is what the spans of a method's requests share: their name
// and their attributes but the message's id, made once for a service,
// method, routing key and last attribute (the call mode, or the server's
// name) rather than for each request. A span that records is given a copy
// of them: the API does not say that a span leaves the slice it is given
// as it is (attribute.NewSet sorts its argument in place), and the
// template's is shared by every request of the method.
type spanTemplate struct {
	service, method, key string
	last                 attribute.KeyValue
	name                 string
	attrs                []attribute.KeyValue
}

// template returns m's span template for a request of method of service
// routed with key, whose last attribute is last (with op, the
// messaging.operation.type), making it when m has none for them: the
// methods past maxMethods share one methodStats, and a client calls a
// server by name with a key of its own.
func (c *config) template(m *methodStats, service, method, key string, op, last attribute.KeyValue) *spanTemplate {
	if t := m.span.Load(); t != nil && t.service == service && t.method == method && t.key == key && t.last == last {
		return t
	}
	t := &spanTemplate{service: service, method: method, key: key, last: last, name: service + "/" + method,
		attrs: c.spanAttrs(service, method, key, op, last)}
	m.span.Store(t)
	return t
}

// maxMethods bounds the methods an interceptor keeps apart, whatever names
// callers send; the rest are counted together as rpc.method "_OTHER", as
// OpenTelemetry's conventions name a value outside a known set. (Not with
// otel.metric.overflow=true: once the SDK has seen that set on an
// instrument, it counts every new set there, as if past its own limit.)
const maxMethods = 4096

// otherMethod is the rpc.method of the methods past maxMethods.
const otherMethod = "_OTHER"

// maxErrorTypes bounds the error types kept apart for a method; the rest
// are counted as error.type "_OTHER".
const maxErrorTypes = 64

func newStats(kvs ...attribute.KeyValue) *methodStats {
	set := attribute.NewSet(kvs...)
	return &methodStats{ok: metric.WithAttributeSet(set), attrs: set}
}

// method returns the stats of method.
func (in *instruments) method(name string) *methodStats {
	if m, ok := in.methods.Load(name); ok {
		return m.(*methodStats)
	}
	if in.kept.Load() >= maxMethods || in.kept.Add(1) > maxMethods { // Load first: past the bound, the count stays put
		return in.overflow
	}
	m, _ := in.methods.LoadOrStore(name, newStats(attribute.String("rpc.method", name)))
	return m.(*methodStats)
}

// failure returns the attributes of a failure of m with error.type errType.
func (m *methodStats) failure(errType string) metric.MeasurementOption {
	if o, ok := m.failed.Load(errType); ok {
		return o.(metric.MeasurementOption)
	}
	if m.types.Load() >= maxErrorTypes || m.types.Add(1) > maxErrorTypes { // codes come from servers: bounded
		errType = semconv.ErrorTypeOther.Value.AsString()
		if o, ok := m.failed.Load(errType); ok {
			return o.(metric.MeasurementOption)
		}
	}
	kvs := append(m.attrs.ToSlice(), semconv.ErrorTypeKey.String(errType))
	o, _ := m.failed.LoadOrStore(errType, metric.WithAttributeSet(attribute.NewSet(kvs...)))
	return o.(metric.MeasurementOption)
}

func newInstruments(m metric.Meter, side string) *instruments {
	in := &instruments{overflow: newStats(attribute.String("rpc.method", otherMethod))}
	in.duration, _ = m.Float64Histogram("rpc."+side+".call.duration", metric.WithUnit("s"),
		metric.WithDescription("How long amqprpc "+side+" requests took, by method and outcome."),
		metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
	in.failures, _ = m.Int64Counter("amqprpc."+side+".failures", metric.WithDescription("Requests that failed, by error.type."))
	_, _ = m.Int64ObservableUpDownCounter("amqprpc."+side+".calls_in_flight", metric.WithDescription("Requests in flight."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			in.methods.Range(func(_, v any) bool {
				m := v.(*methodStats)
				o.Observe(m.inFlight.Load(), m.ok)
				return true
			})
			if n := in.overflow.inFlight.Load(); n != 0 {
				o.Observe(n, in.overflow.ok)
			}
			return nil
		}))
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

// modes are the amqprpc.mode attributes of the call modes, made once.
var modes = [...]attribute.KeyValue{
	runtime.Call: modeAttr(runtime.Call), runtime.Cast: modeAttr(runtime.Cast),
	runtime.Fanout: modeAttr(runtime.Fanout), runtime.CallAll: modeAttr(runtime.CallAll),
	runtime.Stream: modeAttr(runtime.Stream),
}

func modeAttr(m runtime.Mode) attribute.KeyValue { return attribute.String("amqprpc.mode", m.String()) }

// modeOf is the amqprpc.mode attribute of m.
func modeOf(m runtime.Mode) attribute.KeyValue {
	if int(m) >= 0 && int(m) < len(modes) {
		return modes[m]
	}
	return modeAttr(m)
}

// begin counts a request of m in flight, until done is called (deferred,
// so that a method that panics is counted out too), and returns its start;
// end records its outcome.
func (m *methodStats) begin() time.Time {
	m.inFlight.Add(1)
	return time.Now()
}

func (m *methodStats) done() { m.inFlight.Add(-1) }

// end records the duration and the outcome of a request begun at start
// (typeOf names a failure's) on the metrics and on span.
func (in *instruments) end(ctx context.Context, m *methodStats, start time.Time, span trace.Span, err error, typeOf func(error) string) {
	outcome := m.ok
	if err != nil {
		et := typeOf(err)
		outcome = m.failure(et)
		span.SetAttributes(semconv.ErrorTypeKey.String(et))
		span.SetStatus(codes.Error, err.Error())
		in.failures.Add(ctx, 1, outcome)
	}
	in.duration.Record(ctx, time.Since(start).Seconds(), outcome)
}

// The span kinds, made once: an option is an allocation.
var (
	kindClient   = trace.WithSpanKind(trace.SpanKindClient)
	kindProducer = trace.WithSpanKind(trace.SpanKindProducer)
	kindServer   = trace.WithSpanKind(trace.SpanKindServer)
	kindConsumer = trace.WithSpanKind(trace.SpanKindConsumer)
)

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

// pairs is a propagation carrier that collects what a propagator
// injects, as key-value pairs for runtime.AppendMetadata.
type pairs struct {
	kv  []string
	buf [4]string // traceparent and tracestate, without allocating more
}

func (p *pairs) Get(key string) string {
	for i := 0; i+1 < len(p.kv); i += 2 {
		if p.kv[i] == key {
			return p.kv[i+1]
		}
	}
	return ""
}

func (p *pairs) Set(key, value string) {
	for i := 0; i+1 < len(p.kv); i += 2 {
		if p.kv[i] == key {
			p.kv[i+1] = value
			return
		}
	}
	if p.kv == nil {
		p.kv = p.buf[:0]
	}
	p.kv = append(p.kv, key, value)
}

func (p *pairs) Keys() []string {
	keys := make([]string, 0, len(p.kv)/2)
	for i := 0; i+1 < len(p.kv); i += 2 {
		keys = append(keys, p.kv[i])
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
	s := newClientSide(opts)
	return func(ctx context.Context, req *runtime.Request, reply any, next runtime.Invoke) error {
		ctx, span, m := s.start(ctx, req)
		defer span.End()
		start := m.begin()
		defer m.done()
		err := next(ctx, req, reply)
		s.in.end(ctx, m, start, span, err, errorType)
		return err
	}
}

// ServerInterceptor returns an interceptor that traces and measures each
// request a server runs, as the child of its caller's span.
func ServerInterceptor(opts ...Option) runtime.ServerInterceptor {
	s := newServerSide(opts)
	return func(ctx context.Context, info *runtime.ServerInfo, next runtime.Handler) (any, error) {
		ctx, span, m := s.start(ctx, info)
		defer span.End()
		start := m.begin()
		defer m.done()
		result, err := next(ctx)
		s.in.end(ctx, m, start, span, err, serverErrorType)
		return result, err
	}
}

// side is where one side's interceptors send spans and measurements.
type side struct {
	c      *config
	tracer trace.Tracer
	in     *instruments
}

// clientSide and serverSide are the sides of callers and of servers: a
// call's interceptor and a stream's start their spans alike.
type (
	clientSide struct{ side }
	serverSide struct{ side }
)

func newSide(opts []Option, name string) side {
	c := newConfig(opts)
	return side{c: c, tracer: c.tracers.Tracer(scope), in: newInstruments(c.meters.Meter(scope), name)}
}

func newClientSide(opts []Option) *clientSide { return &clientSide{newSide(opts, "client")} }
func newServerSide(opts []Option) *serverSide { return &serverSide{newSide(opts, "server")} }

// start starts the span of req, the child of ctx's, and returns the
// context it goes on with, whose metadata carries the trace context, and
// the stats of req's method.
func (s *clientSide) start(ctx context.Context, req *runtime.Request) (context.Context, trace.Span, *methodStats) {
	kind := kindClient
	if req.Mode == runtime.Cast || req.Mode == runtime.Fanout {
		kind = kindProducer
	}
	key := req.Topic
	if req.Server != "" {
		key += "." + req.Server
	}
	m := s.in.method(req.Method)
	t := s.c.template(m, serviceName(req.Service), req.Method, key, semconv.MessagingOperationTypeSend, modeOf(req.Mode))
	ctx, span := s.tracer.Start(ctx, t.name, kind)
	if span.IsRecording() { // attributes only for spans that keep them
		span.SetAttributes(slices.Clone(t.attrs)...)
	}
	var out pairs
	s.c.propagator.Inject(ctx, &out)
	return runtime.AppendMetadata(ctx, out.kv...), span, m
}

// start starts the span of the request info describes, the child of its
// caller's (whose trace context came in ctx's metadata), and returns the
// context the method runs with and the stats of the method.
func (s *serverSide) start(ctx context.Context, info *runtime.ServerInfo) (context.Context, trace.Span, *methodStats) {
	ctx = s.c.propagator.Extract(ctx, carrier(runtime.IncomingMetadata(ctx)))
	kind := kindServer
	if !info.Reply {
		kind = kindConsumer
	}
	m := s.in.method(info.Method)
	t := s.c.template(m, serviceName(info.Service), info.Method, info.Topic, semconv.MessagingOperationTypeProcess, attribute.String("amqprpc.server", info.Server))
	ctx, span := s.tracer.Start(ctx, t.name, kind)
	if span.IsRecording() {
		attrs := make([]attribute.KeyValue, len(t.attrs), len(t.attrs)+1)
		copy(attrs, t.attrs)
		span.SetAttributes(append(attrs, semconv.MessagingMessageID(info.ID))...)
	}
	return ctx, span, m
}

// serverErrorType is the code a method's error goes back with.
func serverErrorType(err error) string {
	if t := errorType(err); t != semconv.ErrorTypeOther.Value.AsString() {
		return t
	}
	return string(runtime.CodeUnknown)
}

// counter is a count of runtime stats, exported as a metric.
type counter[S any] struct {
	name, description string
	value             func(S) uint64
}

var serverCounters = []counter[runtime.ServerStats]{
	{"amqprpc.server.requests.malformed", "Requests answered with a failure without running: not valid amqprpc, or too large.", func(s runtime.ServerStats) uint64 { return s.Malformed }},
	{"amqprpc.server.requests.unanswerable", "Requests rejected unanswered: their reply could not go where they asked.", func(s runtime.ServerStats) uint64 { return s.Unanswerable }},
	{"amqprpc.server.requests.quarantined", "Requests rejected when delivered again after two lost connections.", func(s runtime.ServerStats) uint64 { return s.Quarantined }},
	{"amqprpc.server.requests.expired", "Requests dropped unrun, their caller's deadline past.", func(s runtime.ServerStats) uint64 { return s.Expired }},
	{"amqprpc.server.requests.redelivered", "Deliveries the broker marked as delivered before.", func(s runtime.ServerStats) uint64 { return s.Redelivered }},
	{"amqprpc.server.replies.undelivered", "Replies to direct reply-to addresses dropped at their caller's deadline, unpublished.", func(s runtime.ServerStats) uint64 { return s.Undelivered }},
	{"amqprpc.server.reconnections", "Times the server connected again after losing its connection.", func(s runtime.ServerStats) uint64 { return s.Reconnects }},
	{"amqprpc.server.consumers.cancelled", "Times the broker cancelled a consumer of the server, which consumed its queue again.", func(s runtime.ServerStats) uint64 { return s.Cancelled }},
	{"amqprpc.server.batches", "Deliveries that held several requests.", func(s runtime.ServerStats) uint64 { return s.Batches }},
	{"amqprpc.server.batched_requests", "Requests in deliveries that held several: over amqprpc.server.batches, the mean batch size.", func(s runtime.ServerStats) uint64 { return s.BatchedRequests }},
}

var clientCounters = []counter[runtime.ClientStats]{
	{"amqprpc.client.reconnections", "Times the client connected again after losing its connection.", func(s runtime.ClientStats) uint64 { return s.Reconnects }},
	{"amqprpc.client.batches", "Messages that carried several calls.", func(s runtime.ClientStats) uint64 { return s.Batches }},
	{"amqprpc.client.batched_calls", "Calls in messages that carried several: over amqprpc.client.batches, the mean batch size.", func(s runtime.ClientStats) uint64 { return s.BatchedCalls }},
}

// ObserveServer exports what srv counts besides its requests' calls
// (runtime.ServerStats) as counters, read when the metrics are collected:
// amqprpc.server.requests.{malformed,unanswerable,quarantined,expired,redelivered},
// amqprpc.server.reconnections, amqprpc.server.batches and
// amqprpc.server.batched_requests, with the attributes amqprpc.topic and
// amqprpc.server. Unregister the result when srv is gone.
func ObserveServer(srv *runtime.Server, opts ...Option) (metric.Registration, error) {
	attrs := metric.WithAttributeSet(attribute.NewSet(attribute.String("amqprpc.topic", srv.Topic()), attribute.String("amqprpc.server", srv.Name())))
	return observe(newConfig(opts), serverCounters, srv.Stats, attrs)
}

// ObserveClient exports what c counts besides its calls
// (runtime.ClientStats) as counters, read when the metrics are collected:
// amqprpc.client.reconnections, amqprpc.client.batches and
// amqprpc.client.batched_calls. Unregister the result when c is closed.
func ObserveClient(c *runtime.Client, opts ...Option) (metric.Registration, error) {
	return observe(newConfig(opts), clientCounters, c.Stats, metric.WithAttributeSet(attribute.NewSet()))
}

func observe[S any](c *config, counters []counter[S], stats func() S, attrs metric.ObserveOption) (metric.Registration, error) {
	m := c.meters.Meter(scope)
	insts := make([]metric.Int64ObservableCounter, len(counters))
	observables := make([]metric.Observable, len(counters))
	for i, k := range counters {
		inst, err := m.Int64ObservableCounter(k.name, metric.WithDescription(k.description))
		if err != nil {
			return nil, err
		}
		insts[i], observables[i] = inst, inst
	}
	return m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := stats()
		for i, k := range counters {
			o.ObserveInt64(insts[i], int64(k.value(st)), attrs)
		}
		return nil
	}, observables...)
}
