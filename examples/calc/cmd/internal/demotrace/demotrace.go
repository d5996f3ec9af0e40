// Package demotrace gives the example's commands OpenTelemetry tracing
// and metrics (otelamqprpc) that print as lines: enough to see a call's
// trace go from the client, through the broker, to a server, and what the
// metrics counted.
package demotrace

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/amqprpc/amqprpc/otelamqprpc"
)

// Provider returns a tracer provider that prints each span to w when it
// ends, and the interceptor options that use it.
func Provider(w io.Writer) (*sdktrace.TracerProvider, otelamqprpc.Option) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(&lines{w: w}))
	return tp, otelamqprpc.WithTracerProvider(tp)
}

// Meter returns the interceptor option that measures into a meter
// provider of its own, and a function that prints what it has measured
// to w, a line per data point.
func Meter(w io.Writer) (otelamqprpc.Option, func()) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	return otelamqprpc.WithMeterProvider(mp), func() {
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(context.Background(), &rm); err != nil {
			fmt.Fprintln(w, "metrics:", err)
			return
		}
		var out []string
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				switch d := m.Data.(type) {
				case metricdata.Histogram[float64]:
					for _, p := range d.DataPoints {
						out = append(out, fmt.Sprintf("metric %s%s count=%d sum=%.6f", m.Name, attrs(p.Attributes), p.Count, p.Sum))
					}
				case metricdata.Sum[int64]:
					for _, p := range d.DataPoints {
						out = append(out, fmt.Sprintf("metric %s%s value=%d", m.Name, attrs(p.Attributes), p.Value))
					}
				}
			}
		}
		sort.Strings(out)
		for _, line := range out {
			fmt.Fprintln(w, line)
		}
	}
}

func attrs(set attribute.Set) string {
	s := ""
	for _, kv := range set.ToSlice() {
		s += fmt.Sprintf(" %s=%s", kv.Key, kv.Value.Emit())
	}
	return s
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
