package runtime

import (
	"context"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// The per-call work of a client and of a server that does not touch the
// network: what amqprpc adds to every call. make bench runs these with
// -benchmem; bench/RESULTS.md has the figures.

type benchArgs struct {
	V1 int `json:"v1"`
	V2 int `json:"v2"`
}

var benchDesc = &ServiceDesc{
	ServiceName: "Calculator",
	Methods: []MethodDesc{{Name: "add", Handler: func(impl any, ctx context.Context, dec func(any) error) (any, error) {
		var args benchArgs
		if err := dec(&args); err != nil {
			return nil, err
		}
		return args.V1 + args.V2, nil
	}}},
}

// BenchmarkEncodeRequest is what a client does to send a call: encode it.
func BenchmarkEncodeRequest(b *testing.B) {
	r := outRequest{msgID: "6f0a8f4e-2b8e-4a8e-9a54-1c1f5b7f5d2e", method: "add", args: &benchArgs{2, 3}, replyTo: "amq.gen-1234567890abcdef", deadline: time.Now().Add(time.Minute)}
	b.ReportAllocs()
	for b.Loop() {
		var pub amqp.Publishing
		if err := (classic{}).encodeRequest(&pub, &r); err != nil {
			b.Fatal(err)
		}
	}
}

func benchDelivery() amqp.Delivery {
	var pub amqp.Publishing
	r := outRequest{msgID: "6f0a8f4e-2b8e-4a8e-9a54-1c1f5b7f5d2e", method: "add", args: &benchArgs{2, 3}, replyTo: "amq.gen-1234567890abcdef", deadline: time.Now().Add(time.Hour)}
	if err := (classic{}).encodeRequest(&pub, &r); err != nil {
		panic(err)
	}
	return amqp.Delivery{Body: pub.Body, CorrelationId: pub.CorrelationId, ReplyTo: pub.ReplyTo, Headers: pub.Headers}
}

// BenchmarkDecodeRequest is what a server does to read a request.
func BenchmarkDecodeRequest(b *testing.B) {
	d := benchDelivery()
	b.ReportAllocs()
	for b.Loop() {
		var r inRequest
		if err := (classic{}).decodeRequest(&d, &r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkServe is the server's whole path for one request, without the
// network: decode, check the reply path, dispatch to the method (arguments
// decoded by generated code's dec), encode the reply.
func BenchmarkServe(b *testing.B) {
	benchServe(b)
}

// BenchmarkServeIntercepted is BenchmarkServe with an interceptor that
// only calls the next: what the seam costs a request.
func BenchmarkServeIntercepted(b *testing.B) {
	benchServe(b, WithServerInterceptors(func(ctx context.Context, info *ServerInfo, next Handler) (any, error) { return next(ctx) }))
}

func benchServe(b *testing.B, opts ...ServerOption) {
	s := NewServer("amqp://unused", "calc", append([]ServerOption{WithLogger(nil)}, opts...)...)
	s.RegisterService(benchDesc, struct{}{})
	s.ctx = context.Background()
	d := benchDelivery()
	b.ReportAllocs()
	for b.Loop() {
		var req inRequest
		if err := s.decode(&d, &req); err != nil {
			b.Fatal(err)
		}
		if err := s.checkReply(&req); err != nil {
			b.Fatal(err)
		}
		result, failure := s.dispatch(s.ctx, &req)
		if failure != nil {
			b.Fatal(failure)
		}
		pub := s.encode(&req, "", result, nil)
		if len(pub.Body) == 0 {
			b.Fatal("empty reply")
		}
	}
}

// BenchmarkDecodeReply is what a client does with a reply.
func BenchmarkDecodeReply(b *testing.B) {
	d := amqp.Delivery{Body: []byte(`{"result":5}`), CorrelationId: "6f0a8f4e-2b8e-4a8e-9a54-1c1f5b7f5d2e"}
	b.ReportAllocs()
	for b.Loop() {
		var n int
		if err := (classic{}).decodeReply(&d, &n); err != nil || n != 5 {
			b.Fatal(n, err)
		}
	}
}
