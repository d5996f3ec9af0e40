package runtime

import (
	"context"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqprpc/amqprpc/internal/wire"
)

// The per-call work of a server that does not touch the network: what
// amqprpc adds to every call. make bench runs these with -benchmem;
// bench/RESULTS.md has the figures. The wire's own are in internal/wire.

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

func benchDelivery() amqp.Delivery {
	var pub amqp.Publishing
	r := wire.Out{MsgID: "6f0a8f4e-2b8e-4a8e-9a54-1c1f5b7f5d2e", Method: "add", Args: &benchArgs{2, 3}, ReplyTo: "amq.gen-1234567890abcdef", Deadline: time.Now().Add(time.Hour)}
	if err := wire.Amqprpc(wire.AmqprpcTopology{}).EncodeRequest(&pub, &r); err != nil {
		panic(err)
	}
	return amqp.Delivery{Body: pub.Body, CorrelationId: pub.CorrelationId, ReplyTo: pub.ReplyTo, Headers: pub.Headers}
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

// BenchmarkServeCaller is BenchmarkServe for a request with a user_id,
// whose caller the method's context carries (Caller).
func BenchmarkServeCaller(b *testing.B) {
	benchServeAs(b, "alice")
}

// BenchmarkServeAuthorized is BenchmarkServeCaller with a policy that
// admits the caller by a group (WithAuthorization).
func BenchmarkServeAuthorized(b *testing.B) {
	benchServeAs(b, "alice", WithAuthorization(Policy{
		Methods: map[string][]string{"add": {"user:bob", "group:calc"}},
		Groups:  func(Identity) []string { return []string{"calc"} },
	}))
}

func benchServe(b *testing.B, opts ...ServerOption) {
	benchServeAs(b, "", opts...)
}

func benchServeAs(b *testing.B, user string, opts ...ServerOption) {
	s := NewServer("amqp://unused", "calc", append([]ServerOption{WithLogger(nil)}, opts...)...)
	s.RegisterService(benchDesc, struct{}{})
	s.ctx = context.Background()
	d := benchDelivery()
	d.UserId = user
	b.ReportAllocs()
	for b.Loop() {
		r := request{d: &delivery{raw: d}}
		if err := s.decode(&d, &r.in); err != nil {
			b.Fatal(err)
		}
		r.in.User = d.UserId
		if err := s.checkReply(&r.in); err != nil {
			b.Fatal(err)
		}
		result, failure := s.dispatch(s.ctx, &r.in)
		if failure != nil {
			b.Fatal(failure)
		}
		pub := s.encode(&r, result, nil)
		if len(pub.Body) == 0 {
			b.Fatal("empty reply")
		}
	}
}
