package otelamqprpc_test

import (
	"context"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/amqprpc/amqprpc/examples/calc"
	"github.com/amqprpc/amqprpc/otelamqprpc"
	"github.com/amqprpc/amqprpc/runtime"
)

// BenchmarkInterceptors is what OpenTelemetry adds to one call, both
// sides, without the network: a Local with the interceptors, against one
// without.
func BenchmarkInterceptors(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	opts := []otelamqprpc.Option{otelamqprpc.WithTracerProvider(tp), otelamqprpc.WithMeterProvider(mp)}
	for _, tc := range []struct {
		name string
		opts []runtime.LocalOption
	}{
		{"none", nil},
		{"otel", []runtime.LocalOption{runtime.WithClientInterceptors(otelamqprpc.ClientInterceptor(opts...)), runtime.WithServerInterceptors(otelamqprpc.ServerInterceptor(opts...))}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			l := runtime.NewLocal(calc.Topic, tc.opts...)
			defer l.Close()
			calc.RegisterCalculatorServer(l, new(calc.Machine))
			c := calc.NewCalculatorClient(l, calc.Topic)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Add(ctx, 2, 3); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkInterceptorsAlone is the interceptors' own work, both sides,
// around a method that does nothing, without encoding or transport.
func BenchmarkInterceptorsAlone(b *testing.B) {
	b.Run("always", func(b *testing.B) { benchAlone(b, sdktrace.AlwaysSample()) })
	b.Run("ratio-0.1", func(b *testing.B) { benchAlone(b, sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.1))) })
}

func benchAlone(b *testing.B, sampler sdktrace.Sampler) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	opts := []otelamqprpc.Option{otelamqprpc.WithTracerProvider(tp), otelamqprpc.WithMeterProvider(mp)}
	client, server := otelamqprpc.ClientInterceptor(opts...), otelamqprpc.ServerInterceptor(opts...)
	req := &runtime.Request{Target: runtime.Target{Topic: "calc"}, Service: &calc.Calculator_ServiceDesc, Method: "add"}
	info := &runtime.ServerInfo{Topic: "calc", Server: "s1", Service: &calc.Calculator_ServiceDesc, Method: "add", ID: "id", Reply: true}
	method := func(ctx context.Context) (any, error) { return 5, nil }
	b.ReportAllocs()
	for b.Loop() {
		client(context.Background(), req, nil, func(ctx context.Context, req *runtime.Request, reply any) error {
			_, err := server(context.Background(), info, method)
			return err
		})
	}
}
