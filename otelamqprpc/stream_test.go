package otelamqprpc_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/amqprpc/amqprpc/internal/testsvc"
	"github.com/amqprpc/amqprpc/otelamqprpc"
	"github.com/amqprpc/amqprpc/runtime"
)

// counter is a service with a stream, written as amqprpc-gen would:
// count sends the numbers from 0 to n-1 (forever when n < 0), then fails
// with fail, if set, or panics when fail is "panic".
type counter struct{}

type countArgs struct {
	N    int    `json:"n"`
	Fail string `json:"fail"`
}

func (counter) Count(ctx context.Context, n int, fail string) iter.Seq2[int, error] {
	return func(yield func(int, error) bool) {
		for i := 0; n < 0 || i < n; i++ {
			if ctx.Err() != nil || !yield(i, nil) {
				return
			}
		}
		switch fail {
		case "":
		case "panic":
			panic("count: out of numbers")
		default:
			yield(0, &runtime.Error{Code: runtime.CodeAborted, Message: fail})
		}
	}
}

var counterDesc = runtime.ServiceDesc{ServiceName: "Counter", Methods: []runtime.MethodDesc{{
	Name: "count", Mode: runtime.Stream,
	Handler: func(impl any, ctx context.Context, dec func(any) error) (any, error) {
		var a countArgs
		if err := dec(&a); err != nil {
			return nil, err
		}
		return runtime.ItemsOf(impl.(counter).Count(ctx, a.N, a.Fail)), nil
	},
}}}

func count(ctx context.Context, inv runtime.Invoker, topic string, n int, fail string) iter.Seq2[int, error] {
	return runtime.StreamOf[int](ctx, inv, runtime.Request{Target: runtime.Target{Topic: topic}, Service: &counterDesc, Method: "count", Args: &countArgs{N: n, Fail: fail}})
}

// drain reads a stream to its end, or to its first error, or to its
// stop-th item when stop > 0, and returns the items read and the error.
func drain(seq iter.Seq2[int, error], stop int) (int, error) {
	read := 0
	for _, err := range seq {
		if err != nil {
			return read, err
		}
		if read++; read == stop {
			break
		}
	}
	return read, nil
}

// streamSpans returns the client's and the server's span of the stream
// just read, the second the child of the first, and checks that each
// counted items and ended as want says (codes.Unset, or codes.Error with
// error.type errType).
func streamSpans(t *testing.T, spans *tracetest.SpanRecorder, items int64, want codes.Code, errType string) (client, server sdktrace.ReadOnlySpan) {
	t.Helper()
	client, server = pair(t, spans, "Counter/count")
	if client.SpanKind() != trace.SpanKindClient || server.SpanKind() != trace.SpanKindServer || value(client, "amqprpc.mode") != "stream" {
		t.Errorf("kinds %v and %v, mode %q", client.SpanKind(), server.SpanKind(), value(client, "amqprpc.mode"))
	}
	for _, s := range []sdktrace.ReadOnlySpan{client, server} {
		if got := value(s, "amqprpc.stream.items"); got != fmt.Sprint(items) {
			t.Errorf("%s span: amqprpc.stream.items %q, want %d", s.SpanKind(), got, items)
		}
		if s.Status().Code != want || value(s, "error.type") != errType {
			t.Errorf("%s span: status %v, error.type %q; want %v, %q", s.SpanKind(), s.Status(), value(s, "error.type"), want, errType)
		}
	}
	return client, server
}

// streamsInFlight returns the client's and the server's streams of count
// in flight.
func streamsInFlight(t *testing.T, reader *sdkmetric.ManualReader) (client, server int64) {
	t.Helper()
	for _, p := range points(t, reader) {
		switch {
		case p.attr("rpc.method") != "count":
		case p.name == "amqprpc.client.calls_in_flight":
			client += p.value
		case p.name == "amqprpc.server.calls_in_flight":
			server += p.value
		}
	}
	return client, server
}

// TestStreamSpansInMemory: a stream through a Local has one span a side,
// the server's the child of the client's, each ending once with the
// items counted: after its last item, after its method's failure or
// panic (which both record), after the caller breaks out or cancels
// (which is no failure), and
// when the caller closes it before reading an item, which the server's
// iteration never starts for. None is left in flight. No broker.
func TestStreamSpansInMemory(t *testing.T) {
	spans, reader, opts := providers()
	l := runtime.NewLocal("counter", runtime.WithStreamClientInterceptors(otelamqprpc.StreamClientInterceptor(opts...)),
		runtime.WithStreamServerInterceptors(otelamqprpc.StreamServerInterceptor(opts...)))
	defer l.Close()
	l.RegisterService(&counterDesc, counter{})
	ctx := context.Background()

	if n, err := drain(count(ctx, l, "counter", 5, ""), 0); n != 5 || err != nil {
		t.Fatalf("5 items: read %d, %v", n, err)
	}
	streamSpans(t, spans, 5, codes.Unset, "")

	spans.Reset()
	if n, err := drain(count(ctx, l, "counter", 3, "out of numbers"), 0); n != 3 || err == nil {
		t.Fatalf("3 items, then a failure: read %d, %v", n, err)
	}
	streamSpans(t, spans, 3, codes.Error, "aborted")

	spans.Reset()
	if n, err := drain(count(ctx, l, "counter", 2, "panic"), 0); n != 2 || err == nil {
		t.Fatalf("2 items, then a panic: read %d, %v", n, err)
	}
	streamSpans(t, spans, 2, codes.Error, "internal")

	spans.Reset()
	if n, err := drain(count(ctx, l, "counter", -1, ""), 4); n != 4 || err != nil {
		t.Fatalf("a break after 4 items: read %d, %v", n, err)
	}
	// A Local pulls the method's items as its caller reads them: the
	// method yielded the 4 items read, and the break stopped it there.
	streamSpans(t, spans, 4, codes.Unset, "")

	spans.Reset()
	cctx, cancel := context.WithCancel(ctx)
	st, err := l.InvokeStream(cctx, runtime.Request{Target: runtime.Target{Topic: "counter"}, Service: &counterDesc, Method: "count", Args: &countArgs{N: -1}})
	if err != nil {
		t.Fatal(err)
	}
	var item int
	for range 2 {
		if err := st.Recv(&item); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	if err := st.Recv(&item); !errors.Is(err, context.Canceled) {
		t.Fatalf("Recv after the caller cancelled: %v", err)
	}
	st.Close()
	streamSpans(t, spans, 2, codes.Unset, "")

	spans.Reset()
	st, err = l.InvokeStream(ctx, runtime.Request{Target: runtime.Target{Topic: "counter"}, Service: &counterDesc, Method: "count", Args: &countArgs{N: 5}})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	st.Close()
	streamSpans(t, spans, 0, codes.Unset, "")

	if client, server := streamsInFlight(t, reader); client != 0 || server != 0 {
		t.Errorf("streams in flight after they all ended: %d on the client, %d on the server; want 0 (an end counted twice is -1)", client, server)
	}
	durations := 0
	for _, p := range points(t, reader) {
		if p.name == "rpc.client.call.duration" && p.attr("rpc.method") == "count" {
			durations += int(p.value)
		}
	}
	if durations != 6 {
		t.Errorf("%d stream durations measured on the client; want 6", durations)
	}
}

// TestStreamTraceAcrossTheBroker: a stream of more items than the
// client's window, through a real broker, has one client and one server
// span in one trace, each with all its items; one that fails records the
// failure on both sides; a break ends the client's span with the items
// read, and none is left in flight.
func TestStreamTraceAcrossTheBroker(t *testing.T) {
	spans, reader, opts := providers()
	topic := fmt.Sprintf("otel.stream.%d", time.Now().UnixNano())
	srv := runtime.NewServer(brokerURL(), topic, runtime.WithServerName("s1"), runtime.WithStreamServerInterceptors(otelamqprpc.StreamServerInterceptor(opts...)))
	srv.RegisterService(&counterDesc, counter{})
	testsvc.Serve(t, srv, brokerURL(), topic)
	c, err := runtime.Dial(brokerURL(), runtime.WithStreamWindow(16), runtime.WithStreamClientInterceptors(otelamqprpc.StreamClientInterceptor(opts...)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) { // until the server consumes
		if _, err := drain(count(ctx, c, topic, 1, ""), 0); err == nil {
			break
		} else if time.Now().After(end) {
			t.Fatal(err)
		}
	}

	spans.Reset()
	if n, err := drain(count(ctx, c, topic, 100, ""), 0); n != 100 || err != nil {
		t.Fatalf("100 items: read %d, %v", n, err)
	}
	_, server := streamSpans(t, spans, 100, codes.Unset, "")
	if value(server, "messaging.message.id") == "" || value(server, "amqprpc.server") != "s1" {
		t.Errorf("server span attributes %v", server.Attributes())
	}

	spans.Reset()
	if n, err := drain(count(ctx, c, topic, 3, "out of numbers"), 0); n != 3 || err == nil {
		t.Fatalf("3 items, then a failure: read %d, %v", n, err)
	}
	streamSpans(t, spans, 3, codes.Error, "aborted")

	spans.Reset()
	if n, err := drain(count(ctx, c, topic, -1, ""), 10); n != 10 || err != nil {
		t.Fatalf("a break after 10 items: read %d, %v", n, err)
	}
	client, server := pair(t, spans, "Counter/count")
	if value(client, "amqprpc.stream.items") != "10" || client.Status().Code != codes.Unset || server.Status().Code != codes.Unset {
		t.Errorf("after a break: client items %s, status %v; server status %v", value(client, "amqprpc.stream.items"), client.Status(), server.Status())
	}
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) { // the server's end comes a little later
		client, server := streamsInFlight(t, reader)
		if client == 0 && server == 0 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("streams in flight after they all ended: %d on the client, %d on the server", client, server)
		}
	}
}
