package runtime_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/amqprpc/amqprpc/describe"
	"github.com/amqprpc/amqprpc/examples/calc"
	"github.com/amqprpc/amqprpc/runtime"
)

// Calling and serving the Calculator of examples/calc over RabbitMQ (it
// needs a broker, so it does not run as a test: it compiles).
func Example() {
	ctx := context.Background()
	conn, err := runtime.Dial("amqp://guest:guest@127.0.0.1:5672/")
	if err != nil {
		return
	}
	defer conn.Close()
	calculator := calc.NewCalculatorClient(conn, "calc")
	sum, err := calculator.Add(ctx, 2, 3)
	fmt.Println(sum, err)

	srv := runtime.NewServer("amqp://guest:guest@127.0.0.1:5672/", "calc")
	calc.RegisterCalculatorServer(srv, new(calc.Machine))
	err = srv.Serve()
	fmt.Println(err)
}

// A Local serves and calls a service in memory, through the same dispatch
// and encoding as a broker: for unit tests, without RabbitMQ.
func ExampleLocal() {
	l := runtime.NewLocal(calc.Topic)
	defer l.Close()
	calc.RegisterCalculatorServer(l, new(calc.Machine))

	calculator := calc.NewCalculatorClient(l, calc.Topic)
	sum, err := calculator.Add(context.Background(), 2, 3)
	fmt.Println(sum, err)
	_, err = calculator.Div(context.Background(), 1, 0)
	fmt.Println(errors.Is(err, calc.ErrDivideByZero))
	// Output:
	// 5 <nil>
	// true
}

// Server interceptors wrap every request a server runs; here one refuses
// callers that send no tenant in their metadata.
func ExampleWithServerInterceptors() {
	tenants := func(ctx context.Context, info *runtime.ServerInfo, next runtime.Handler) (any, error) {
		if runtime.IncomingMetadata(ctx)["tenant"] == "" {
			return nil, runtime.Errorf(runtime.CodeUnauthenticated, "%s needs a tenant", info.Method)
		}
		return next(ctx)
	}
	l := runtime.NewLocal(calc.Topic, runtime.WithServerInterceptors(tenants))
	defer l.Close()
	calc.RegisterCalculatorServer(l, new(calc.Machine))
	calculator := calc.NewCalculatorClient(l, calc.Topic)

	_, err := calculator.Add(context.Background(), 2, 3)
	fmt.Println(err)
	ctx := runtime.WithMetadata(context.Background(), runtime.Metadata{"tenant": "t1"})
	fmt.Println(calculator.Add(ctx, 2, 3))
	// Output:
	// call calc/add: amqprpc: remote error: unauthenticated: add needs a tenant
	// 5 <nil>
}

// Client interceptors wrap every request a client sends; here one adds
// metadata to each.
func ExampleWithClientInterceptors() {
	tenant := func(ctx context.Context, req *runtime.Request, reply any, next runtime.Invoke) error {
		return next(runtime.WithMetadata(ctx, runtime.Metadata{"tenant": "t1"}), req, reply)
	}
	echo := func(ctx context.Context, info *runtime.ServerInfo, next runtime.Handler) (any, error) {
		fmt.Println(info.Method, "for", runtime.IncomingMetadata(ctx)["tenant"])
		return next(ctx)
	}
	l := runtime.NewLocal(calc.Topic, runtime.WithClientInterceptors(tenant), runtime.WithServerInterceptors(echo))
	defer l.Close()
	calc.RegisterCalculatorServer(l, new(calc.Machine))
	fmt.Println(calc.NewCalculatorClient(l, calc.Topic).Add(context.Background(), 2, 3))
	// Output:
	// add for t1
	// 5 <nil>
}

// A server lets alice and the group ops add, any caller the broker
// verified describe it, and nobody else call anything; in memory, a Local
// serves its callers as the user WithUserID names.
func ExampleWithAuthorization() {
	groups := map[string][]string{"carol": {"ops"}}
	policy := runtime.Policy{
		Methods: map[string][]string{
			"add":            {"user:alice", "group:ops"},
			describe.Request: {"verified"},
		},
		Groups: func(id runtime.Identity) []string { return groups[id.User] },
	}
	for _, user := range []string{"alice", "carol", "mallory", ""} {
		l := runtime.NewLocal(calc.Topic, runtime.WithAuthorization(policy), runtime.WithUserID(user))
		calc.RegisterCalculatorServer(l, new(calc.Machine))
		_, err := calc.NewCalculatorClient(l, calc.Topic).Add(context.Background(), 2, 3)
		var rerr *runtime.Error
		switch {
		case err == nil:
			fmt.Printf("%q: allowed\n", user)
		case errors.As(err, &rerr):
			fmt.Printf("%q: %s\n", user, rerr.Code)
		}
		l.Close()
	}
	// Output:
	// "alice": allowed
	// "carol": allowed
	// "mallory": permission_denied
	// "": unauthenticated
}

// A method reads who called it: the broker user its request was published
// as, verified by the broker, and, in oslo mode, the OpenStack identity of
// its request context.
func ExampleCaller() {
	l := runtime.NewLocal(calc.Topic, runtime.WithUserID("alice"),
		runtime.WithServerInterceptors(func(ctx context.Context, info *runtime.ServerInfo, next runtime.Handler) (any, error) {
			fmt.Println(info.Method, "called by", runtime.Caller(ctx))
			return next(ctx)
		}))
	defer l.Close()
	calc.RegisterCalculatorServer(l, new(calc.Machine))
	calc.NewCalculatorClient(l, calc.Topic).Add(context.Background(), 2, 3)
	// Output: add called by user "alice"
}
