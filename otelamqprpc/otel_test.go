package otelamqprpc_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/amqprpc/amqprpc/examples/calc"
	"github.com/amqprpc/amqprpc/internal/testsvc"
	"github.com/amqprpc/amqprpc/otelamqprpc"
	"github.com/amqprpc/amqprpc/runtime"
)

func brokerURL() string {
	if u := os.Getenv("AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

// TestTraceAcrossTheBroker: a call's client span and its server's span
// are one trace across a real broker, the server's the child of the
// client's, named and attributed by the conventions; a cast's consumer is
// the child of its producer; failures have error.type and an error
// status; each of 50 calls at once (sent several to a message) has its own
// parent; the metrics count what happened.
func TestTraceAcrossTheBroker(t *testing.T) {
	spans, reader, opts := providers()

	topic := fmt.Sprintf("otel.%d", time.Now().UnixNano())
	srv := runtime.NewServer(brokerURL(), topic, runtime.WithServerName("s1"), runtime.WithServerInterceptors(otelamqprpc.ServerInterceptor(opts...)))
	calc.RegisterCalculatorServer(srv, new(calc.Machine))
	testsvc.Serve(t, srv, brokerURL(), topic)
	c, err := runtime.Dial(brokerURL(), runtime.WithClientInterceptors(otelamqprpc.ClientInterceptor(opts...)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, register := range []func() (metric.Registration, error){
		func() (metric.Registration, error) { return otelamqprpc.ObserveServer(srv, opts...) },
		func() (metric.Registration, error) { return otelamqprpc.ObserveClient(c, opts...) },
	} {
		r, err := register()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Unregister()
	}
	calculator := calc.NewCalculatorClient(c, topic)
	ctx := context.Background()
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) { // until the server consumes
		if _, err := calculator.Add(ctx, 2, 3); err == nil {
			break
		} else if time.Now().After(end) {
			t.Fatal(err)
		}
	}
	spans.Reset()

	if n, err := calculator.Add(ctx, 2, 3); n != 5 || err != nil {
		t.Fatalf("Add: %d, %v", n, err)
	}
	client, server := pair(t, spans, "Calculator/add")
	if client.SpanKind() != trace.SpanKindClient || server.SpanKind() != trace.SpanKindServer {
		t.Errorf("kinds %v and %v", client.SpanKind(), server.SpanKind())
	}
	for _, want := range []attribute.KeyValue{
		attribute.String("rpc.system", "amqprpc"), attribute.String("rpc.service", "Calculator"), attribute.String("rpc.method", "add"),
		attribute.String("messaging.system", "rabbitmq"), attribute.String("messaging.destination.name", "amqprpc"),
		attribute.String("messaging.rabbitmq.destination.routing_key", topic),
	} {
		for _, s := range []sdktrace.ReadOnlySpan{client, server} {
			if !has(s, want) {
				t.Errorf("%s span has no %v: %v", s.SpanKind(), want, s.Attributes())
			}
		}
	}
	if !has(client, attribute.String("messaging.operation.type", "send")) || !has(server, attribute.String("messaging.operation.type", "process")) || value(server, "messaging.message.id") == "" {
		t.Errorf("operation and message id: client %v, server %v", client.Attributes(), server.Attributes())
	}

	spans.Reset()
	if _, err := calculator.Div(ctx, 1, 0); err == nil {
		t.Fatal("Div by zero succeeded")
	}
	client, server = pair(t, spans, "Calculator/div")
	for _, s := range []sdktrace.ReadOnlySpan{client, server} {
		if s.Status().Code != codes.Error || value(s, "error.type") != "unknown" {
			t.Errorf("failed %s span: status %v, error.type %q", s.SpanKind(), s.Status(), value(s, "error.type"))
		}
	}

	spans.Reset()
	if err := calculator.Store(ctx, 5); err != nil {
		t.Fatal(err)
	}
	producer, consumer := pair(t, spans, "Calculator/store")
	if producer.SpanKind() != trace.SpanKindProducer || consumer.SpanKind() != trace.SpanKindConsumer {
		t.Errorf("cast kinds %v and %v", producer.SpanKind(), consumer.SpanKind())
	}

	spans.Reset()
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			if n, err := calculator.Add(ctx, i, 1); n != i+1 || err != nil {
				t.Errorf("Add(%d, 1): %d, %v", i, n, err)
			}
		})
	}
	wg.Wait()
	clients := map[trace.SpanID]bool{}
	var servers []sdktrace.ReadOnlySpan
	for _, s := range spans.Ended() {
		if s.SpanKind() == trace.SpanKindClient {
			clients[s.SpanContext().SpanID()] = true
		} else {
			servers = append(servers, s)
		}
	}
	parents := map[trace.SpanID]bool{}
	for _, s := range servers {
		if !clients[s.Parent().SpanID()] {
			t.Errorf("a server span's parent %v is no client span", s.Parent().SpanID())
		}
		parents[s.Parent().SpanID()] = true
	}
	if len(clients) != 50 || len(servers) != 50 || len(parents) != 50 {
		t.Errorf("%d client spans, %d server spans, %d distinct parents; want 50 each", len(clients), len(servers), len(parents))
	}

	counts := map[string]int64{}
	reported := map[string]bool{}
	for _, p := range points(t, reader) {
		reported[p.name] = true
		counts[p.name] += p.value
	}
	// The runtime's own counts, from Stats: every one reported, and the
	// client's batches the server's.
	st, cst := srv.Stats(), c.Stats()
	for name, want := range map[string]int64{
		"amqprpc.server.requests.malformed": int64(st.Malformed), "amqprpc.server.requests.unanswerable": 0, "amqprpc.server.requests.quarantined": 0,
		"amqprpc.server.requests.expired": int64(st.Expired), "amqprpc.server.requests.redelivered": 0, "amqprpc.server.reconnections": 0,
		"amqprpc.server.replies.undelivered": 0, "amqprpc.server.consumers.cancelled": 0,
		"amqprpc.server.batches": int64(cst.Batches), "amqprpc.server.batched_requests": int64(cst.BatchedCalls),
		"amqprpc.client.reconnections": 0, "amqprpc.client.batches": int64(st.Batches), "amqprpc.client.batched_calls": int64(st.BatchedRequests),
	} {
		if !reported[name] || counts[name] != want {
			t.Errorf("%s: reported %v, %d; want %d", name, reported[name], counts[name], want)
		}
	}
	t.Logf("server %+v, client %+v", st, cst)
	// Add until the server consumes (ErrNoServer before), then add, div,
	// store and 50 adds: 54 at least, and one failure on the server.
	if counts["rpc.client.call.duration"] < 54 || counts["rpc.server.call.duration"] < 54 || counts["amqprpc.client.failures"] < 1 || counts["amqprpc.server.failures"] != 1 || counts["amqprpc.client.calls_in_flight"] != 0 {
		t.Errorf("metrics %v", counts)
	}
}

// providers returns a tracer provider that records every span in spans,
// a meter provider read by reader, and the options that use them.
func providers() (*tracetest.SpanRecorder, *sdkmetric.ManualReader, []otelamqprpc.Option) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	return spans, reader, []otelamqprpc.Option{otelamqprpc.WithTracerProvider(tp), otelamqprpc.WithMeterProvider(mp)}
}

// point is a data point of a metric: a histogram's count or a sum's value.
type point struct {
	name  string
	attrs attribute.Set
	value int64
}

// attr returns the value of attribute key, "" if none.
func (p point) attr(key attribute.Key) string {
	if v, ok := p.attrs.Value(key); ok {
		return v.Emit()
	}
	return ""
}

// points collects what reader has.
func points(t *testing.T, reader *sdkmetric.ManualReader) []point {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var ps []point
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					ps = append(ps, point{m.Name, p.Attributes, int64(p.Count)})
				}
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					ps = append(ps, point{m.Name, p.Attributes, p.Value})
				}
			}
		}
	}
	return ps
}

// pair returns the client-side and the server-side span named name, and
// checks that the second is the child of the first in one trace.
func pair(t *testing.T, spans *tracetest.SpanRecorder, name string) (client, server sdktrace.ReadOnlySpan) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		client, server = nil, nil
		for _, s := range spans.Ended() {
			if s.Name() != name {
				continue
			}
			switch s.SpanKind() {
			case trace.SpanKindClient, trace.SpanKindProducer:
				client = s
			default:
				server = s
			}
		}
		if client != nil && server != nil {
			break
		}
	}
	if client == nil || server == nil {
		t.Fatalf("spans %s: client %v, server %v", name, client, server)
	}
	if server.SpanContext().TraceID() != client.SpanContext().TraceID() || server.Parent().SpanID() != client.SpanContext().SpanID() {
		t.Errorf("%s: the server's span (trace %v, parent %v) is not the child of the client's (trace %v, span %v)", name,
			server.SpanContext().TraceID(), server.Parent().SpanID(), client.SpanContext().TraceID(), client.SpanContext().SpanID())
	}
	return client, server
}

func has(s sdktrace.ReadOnlySpan, kv attribute.KeyValue) bool {
	for _, a := range s.Attributes() {
		if a == kv {
			return true
		}
	}
	return false
}

func value(s sdktrace.ReadOnlySpan, key string) string {
	for _, a := range s.Attributes() {
		if string(a.Key) == key {
			return a.Value.Emit()
		}
	}
	return ""
}

// blockingCalc is a calculator whose Add waits for release.
type blockingCalc struct {
	calc.Machine
	entered chan struct{}
	release chan struct{}
}

func (b *blockingCalc) Add(v1, v2 int) int {
	b.entered <- struct{}{}
	<-b.release
	return v1 + v2
}

// TestMetricsInMemory: calls in flight count a call while it runs, on each
// side, by method, and none after; durations and failures count by method
// and error.type (Div's declared error goes back with code unknown); every
// recorded span has its attributes. No broker: a Local.
func TestMetricsInMemory(t *testing.T) {
	spans, reader, opts := providers()
	l := runtime.NewLocal("calc", runtime.WithClientInterceptors(otelamqprpc.ClientInterceptor(opts...)),
		runtime.WithServerInterceptors(otelamqprpc.ServerInterceptor(opts...)))
	defer l.Close()
	impl := &blockingCalc{entered: make(chan struct{}), release: make(chan struct{})}
	calc.RegisterCalculatorServer(l, impl)
	c := calc.NewCalculatorClient(l, "calc")
	ctx := context.Background()

	collect := func() map[string]int64 {
		got := map[string]int64{}
		for _, p := range points(t, reader) {
			got[p.name+" "+p.attr("rpc.method")+" "+p.attr("error.type")] += p.value
		}
		return got
	}

	done := make(chan error, 1)
	go func() {
		_, err := c.Add(ctx, 2, 3)
		done <- err
	}()
	<-impl.entered
	during := collect()
	close(impl.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := c.Div(ctx, 1, 0); err == nil {
		t.Fatal("Div(1, 0) succeeded")
	}
	after := collect()
	for key, want := range map[string]int64{
		"amqprpc.client.calls_in_flight add ": 1, "amqprpc.server.calls_in_flight add ": 1,
		"rpc.client.call.duration add ": 0, "rpc.server.call.duration add ": 0,
	} {
		if during[key] != want {
			t.Errorf("while Add runs: %q = %d, want %d (all: %v)", key, during[key], want, during)
		}
	}
	for key, want := range map[string]int64{
		"amqprpc.client.calls_in_flight add ": 0, "amqprpc.server.calls_in_flight add ": 0,
		"rpc.client.call.duration add ": 1, "rpc.server.call.duration add ": 1,
		"rpc.client.call.duration div unknown": 1, "rpc.server.call.duration div unknown": 1,
		"amqprpc.client.failures div unknown": 1, "amqprpc.server.failures div unknown": 1,
	} {
		if after[key] != want {
			t.Errorf("after: %q = %d, want %d (all: %v)", key, after[key], want, after)
		}
	}
	for _, s := range spans.Ended() {
		if value(s, "rpc.method") == "" || value(s, "messaging.system") != "rabbitmq" {
			t.Errorf("span %s has attributes %v", s.Name(), s.Attributes())
		}
	}
}

// TestCardinalityIsBounded: method names and error codes that callers and
// servers send cannot grow the metrics without bound: past 4096 methods
// they are counted as one (rpc.method _OTHER), past 64 error types of a
// method as _OTHER; and a method measured before keeps its new outcomes
// apart after that (the SDK's overflow set, were it used, would take them).
func TestCardinalityIsBounded(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	// The SDK's own limit (2000 by default) would hide the interceptor's.
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader), sdkmetric.WithCardinalityLimit(100000))
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	client := otelamqprpc.ClientInterceptor(otelamqprpc.WithMeterProvider(mp), otelamqprpc.WithTracerProvider(tp))
	call := func(method string, code runtime.Code) {
		req := &runtime.Request{Target: runtime.Target{Topic: "t"}, Method: method}
		client(context.Background(), req, nil, func(context.Context, *runtime.Request, any) error {
			if code == "" {
				return nil
			}
			return &runtime.Error{Code: code}
		})
	}
	for i := range 5000 {
		call(fmt.Sprint("m", i), "")
	}
	for i := range 100 {
		call("m0", runtime.Code(fmt.Sprint("code", i)))
	}
	call("m1", runtime.CodeNotFound)
	methods, types, m1 := map[string]bool{}, map[string]bool{}, false
	for _, p := range points(t, reader) {
		if p.name != "rpc.client.call.duration" {
			continue
		}
		method, et := p.attr("rpc.method"), p.attr("error.type")
		methods[method] = true
		m1 = m1 || method == "m1" && et == "not_found"
		if method == "m0" && et != "" {
			types[et] = true
		}
	}
	if len(methods) != 4097 || !methods["_OTHER"] || !m1 {
		t.Errorf("%d methods measured apart, _OTHER %v, m1's failure %v; want 4096 and the rest together, m1's failure apart", len(methods), methods["_OTHER"], m1)
	}
	if len(types) != 65 || !types["_OTHER"] {
		t.Errorf("%d error types for one method; want at most 64 and _OTHER", len(types))
	}
	// Methods counted together are still named apart on their spans.
	named := map[string]bool{}
	for _, s := range spans.Ended() {
		named[s.Name()] = true
	}
	if len(named) != 5000 || !named["/m4096"] || !named["/m4999"] {
		t.Errorf("%d span names for 5,000 methods (/m4096 %v, /m4999 %v)", len(named), named["/m4096"], named["/m4999"])
	}
}

// TestPanicLeavesNoCallInFlight: a method that panics (the runtime recovers
// it, outside the interceptors) is counted out of the calls in flight.
func TestPanicLeavesNoCallInFlight(t *testing.T) {
	_, reader, opts := providers()
	server := otelamqprpc.ServerInterceptor(opts...)
	info := &runtime.ServerInfo{Topic: "t", Method: "boom", ID: "id", Reply: true}
	func() {
		defer func() { recover() }()
		server(context.Background(), info, func(context.Context) (any, error) { panic("boom") })
	}()
	for _, p := range points(t, reader) {
		if p.name == "amqprpc.server.calls_in_flight" && p.value != 0 {
			t.Errorf("%d calls of %s in flight after its method panicked", p.value, p.attr("rpc.method"))
		}
	}
}

// TestSpansFollowEachRequest: what a span says comes from its own request,
// though the interceptors make a method's name and attributes once: the
// same method called through the topic, then by a server's name, then as
// a cast, and served by two servers of different names, gives spans with
// each one's routing key, mode and server, and its message id.
func TestSpansFollowEachRequest(t *testing.T) {
	spans, _, opts := providers()
	client, server := otelamqprpc.ClientInterceptor(opts...), otelamqprpc.ServerInterceptor(opts...)
	ok := func(context.Context, *runtime.Request, any) error { return nil }
	for _, req := range []*runtime.Request{
		{Target: runtime.Target{Topic: "t"}, Service: &calc.Calculator_ServiceDesc, Method: "add"},
		{Target: runtime.Target{Topic: "t", Server: "s2"}, Service: &calc.Calculator_ServiceDesc, Method: "add"},
		{Target: runtime.Target{Topic: "t"}, Service: &calc.Calculator_ServiceDesc, Method: "add", Mode: runtime.Cast},
		{Target: runtime.Target{Topic: "u"}, Method: "add"},
		{Target: runtime.Target{Topic: "u"}, Service: &calc.Calculator_ServiceDesc, Method: "add"},
	} {
		client(context.Background(), req, nil, ok)
	}
	method := func(context.Context) (any, error) { return nil, nil }
	for _, info := range []*runtime.ServerInfo{
		{Topic: "t", Server: "s1", Service: &calc.Calculator_ServiceDesc, Method: "add", ID: "id1", Reply: true},
		{Topic: "t", Server: "s2", Service: &calc.Calculator_ServiceDesc, Method: "add", ID: "id2", Reply: true},
		{Topic: "t", Server: "s2", Service: &calc.Calculator_ServiceDesc, Method: "add", ID: "id3"},
	} {
		server(context.Background(), info, method)
	}
	var got []string
	for _, s := range spans.Ended() {
		got = append(got, fmt.Sprintf("%s %s key=%s mode=%s server=%s id=%s", s.Name(), s.SpanKind(),
			value(s, "messaging.rabbitmq.destination.routing_key"), value(s, "amqprpc.mode"), value(s, "amqprpc.server"), value(s, "messaging.message.id")))
	}
	want := []string{
		"Calculator/add client key=t mode=call server= id=",
		"Calculator/add client key=t.s2 mode=call server= id=",
		"Calculator/add producer key=t mode=cast server= id=",
		"/add client key=u mode=call server= id=",
		"Calculator/add client key=u mode=call server= id=",
		"Calculator/add server key=t mode= server=s1 id=id1",
		"Calculator/add server key=t mode= server=s2 id=id2",
		"Calculator/add consumer key=t mode= server=s2 id=id3",
	}
	if !slices.Equal(got, want) {
		t.Errorf("spans:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
