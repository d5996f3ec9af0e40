package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/amqprpc/amqprpc/otelamqprpc"
	"github.com/amqprpc/amqprpc/runtime"
)

// The observability section: what interceptors and OpenTelemetry cost
// amqprpc's call, side by side in one run.

// Variants of amqprpc for the section, on both the client and the server.
func init() {
	empty := []runtime.LocalOption{
		runtime.WithClientInterceptors(func(ctx context.Context, req *runtime.Request, reply any, next runtime.Invoke) error {
			return next(ctx, req, reply)
		}),
		runtime.WithServerInterceptors(func(ctx context.Context, info *runtime.ServerInfo, next runtime.Handler) (any, error) {
			return next(ctx)
		}),
	}
	variants["empty-interceptor"] = empty
	// OpenTelemetry's SDK, recording every span and every measurement, and
	// exporting nowhere: what instrumentation costs the call itself.
	variants["otel"] = otelOptions(sdktrace.AlwaysSample())
	// The same with a sampler as production runs it: one trace in ten
	// recorded, the rest propagated only; metrics for every call.
	variants["otel-sampled"] = otelOptions(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.1)))
}

func otelOptions(sampler sdktrace.Sampler) []runtime.LocalOption {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	opts := []otelamqprpc.Option{otelamqprpc.WithTracerProvider(tp), otelamqprpc.WithMeterProvider(mp)}
	return []runtime.LocalOption{
		runtime.WithClientInterceptors(otelamqprpc.ClientInterceptor(opts...)),
		runtime.WithServerInterceptors(otelamqprpc.ServerInterceptor(opts...)),
	}
}

var observeVariants = []string{"default", "empty-interceptor", "otel", "otel-sampled"}

// runObserve measures amqprpc without interceptors, with an empty one on
// each side, and with OpenTelemetry on, and writes the section.
func runObserve(cfg config, w io.Writer, md *strings.Builder, topic func(string) string, broker int) error {
	srv := make(map[string]*servers)
	defer func() {
		for _, s := range srv {
			s.stop()
		}
	}()
	for _, v := range observeVariants {
		s, err := startServers("amqprpc", v, topic("observe-"+v), 1, 0)
		if err != nil {
			return fmt.Errorf("start %s server: %w", v, err)
		}
		srv[v] = s
	}
	ms := []measurement{{"latency", 1, true}, {"tp64", 64, false}}
	res, err := series(cfg, w, ms, observeVariants, func(v string, m measurement) (result, error) {
		return measure("amqprpc", v, srv[v], m.inflight, cfg, m.latency, broker)
	})
	if err != nil {
		return err
	}
	med := res.med
	fmt.Fprintf(md, "## Interceptors and OpenTelemetry\n\namqprpc's call with no interceptor (default), with an interceptor that only calls the next on each side, "+
		"with `otelamqprpc` on each side: OpenTelemetry's SDK recording every span (always sampled) and every measurement, exporting nowhere, "+
		"and the same with one trace in ten sampled (otel-sampled: ParentBased(TraceIDRatioBased(0.1)); every call measured, every trace context sent).\n\n")
	fmt.Fprintf(md, "| variant | p50 | p99 | calls/s at 64 | / default | CPU/call client + server | broker |\n|---|---|---|---|---|---|---|\n")
	for _, v := range observeVariants {
		fmt.Fprintf(md, "| %s | %s | %s | %s | %.2f | %s | %s |\n", v, fmtMicros(med(v, "latency", p50)), fmtMicros(med(v, "latency", p99)),
			fmtRate(med(v, "tp64", rate)), med(v, "tp64", rate)/med("default", "tp64", rate), fmtMicros(med(v, "tp64", clientCPU)+med(v, "tp64", serverCPU)), fmtMicros(med(v, "tp64", brokerCPU)))
	}
	md.WriteString("\nTargets: an empty interceptor costs no measurable throughput; OpenTelemetry at most 10% at 64 in flight.\n\n")
	return nil
}
