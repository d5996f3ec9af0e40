// Package demotrace gives the example's commands OpenTelemetry tracing
// (otelamqprpc) that prints each span as one line: enough to see a call's
// trace go from the client, through the broker, to a server.
package demotrace

import (
	"context"
	"fmt"
	"io"
	"sync"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/amqprpc/amqprpc/otelamqprpc"
)

// Provider returns a tracer provider that prints each span to w when it
// ends, and the interceptor options that use it.
func Provider(w io.Writer) (*sdktrace.TracerProvider, otelamqprpc.Option) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(&lines{w: w}))
	return tp, otelamqprpc.WithTracerProvider(tp)
}

// lines is a span exporter that writes a line per span.
type lines struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lines) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range spans {
		parent := "none"
		if s.Parent().IsValid() {
			parent = s.Parent().SpanID().String()
		}
		fmt.Fprintf(l.w, "span %s kind=%s trace=%s id=%s parent=%s took=%v", s.Name(), s.SpanKind(), s.SpanContext().TraceID(), s.SpanContext().SpanID(), parent, s.EndTime().Sub(s.StartTime()).Round(1000))
		for _, a := range s.Attributes() {
			if a.Key == "error.type" || a.Key == "amqprpc.server" {
				fmt.Fprintf(l.w, " %s=%s", a.Key, a.Value.Emit())
			}
		}
		fmt.Fprintln(l.w)
	}
	return nil
}

func (l *lines) Shutdown(context.Context) error { return nil }
