package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/amqprpc/amqprpc/internal/testsvc"
	"github.com/amqprpc/amqprpc/runtime"
)

// recorder records the order in which interceptors ran.
type recorder struct {
	mu  sync.Mutex
	log []string
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	r.log = append(r.log, s)
	r.mu.Unlock()
}

func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprint(r.log)
}

// TestInterceptorsAndMetadata: client and server interceptors run in the
// order given, around the call; metadata set by the caller and by an
// interceptor reaches the server's, each request its own, also when calls
// go several to a message; a server interceptor can refuse a call.
func TestInterceptorsAndMetadata(t *testing.T) {
	topic := newTopic(t)
	var rec recorder
	serverSide := func(name string) runtime.ServerInterceptor {
		return func(ctx context.Context, info *runtime.ServerInfo, next runtime.Handler) (any, error) {
			md := runtime.IncomingMetadata(ctx)
			if info.Method == "div" && md["tenant"] != "t1" {
				return nil, runtime.Errorf(runtime.CodePermissionDenied, "tenant %q may not divide", md["tenant"])
			}
			if info.Method != "add" || md["n"] == "" {
				return next(ctx)
			}
			rec.add(name + ">" + info.Method)
			result, err := next(ctx)
			rec.add(name + "<" + info.Method)
			if fmt.Sprint(result) != md["n"] || md["tenant"] != "t1" || info.Topic != topic || info.Server != "main" || !info.Reply || info.Service.ServiceName != "Arith" {
				return nil, fmt.Errorf("the request with metadata %v (%+v) answered %v", md, info, result)
			}
			return result, err
		}
	}
	serve(t, topic, runtime.WithServerInterceptors(serverSide("s1"), serverSide("s2")))

	clientSide := func(name string) runtime.ClientInterceptor {
		return func(ctx context.Context, req *runtime.Request, reply any, next runtime.Invoke) error {
			if req.Method == "add" && runtime.OutgoingMetadata(ctx)["n"] == "0" {
				rec.add(name + ">" + req.Mode.String())
				defer rec.add(name + "<" + req.Mode.String())
			}
			return next(runtime.WithMetadata(ctx, runtime.Metadata{"tenant": "t1"}), req, reply)
		}
	}
	c := dial(t, runtime.WithClientInterceptors(clientSide("c1"), clientSide("c2")))
	arith := testsvc.NewArithClient(c, topic)

	ctx := runtime.WithMetadata(context.Background(), runtime.Metadata{"n": "0", "x-forged": "no", "amqprpc-deadline": "no"})
	if n, err := arith.Add(ctx, 0, 0); n != 0 || err != nil {
		t.Fatalf("Add: %d, %v", n, err)
	}
	if got, want := rec.String(), "[c1>call c2>call s1>add s2>add s2<add s1<add c2<call c1<call]"; got != want {
		t.Errorf("interceptors ran %s, want %s", got, want)
	}

	// 200 calls at once: several go to a message, each with its metadata.
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := 1; i <= 200; i++ {
		wg.Go(func() {
			n, err := arith.Add(runtime.WithMetadata(context.Background(), runtime.Metadata{"n": strconv.Itoa(i)}), i, 0)
			if err != nil || n != i {
				errs <- fmt.Errorf("call %d: %d, %v", i, n, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// A server interceptor refuses what the client's did not allow.
	plain := testsvc.NewArithClient(dial(t), topic)
	if _, err := plain.Div(context.Background(), 1, 1); remoteCode(err) != runtime.CodePermissionDenied {
		t.Errorf("Div without a tenant: %v, want permission_denied", err)
	}
	if n, err := arith.Div(context.Background(), 6, 3); n != 2 || err != nil {
		t.Errorf("Div with a tenant: %d, %v", n, err)
	}
}

// TestClientInterceptorsSeeGathers: a gather goes through the client's
// interceptors as mode CallAll, and one can stop it.
func TestClientInterceptorsSeeGathers(t *testing.T) {
	topic := newTopic(t)
	serve(t, topic)
	var modes []runtime.Mode
	c := dial(t, runtime.WithClientInterceptors(func(ctx context.Context, req *runtime.Request, reply any, next runtime.Invoke) error {
		modes = append(modes, req.Mode)
		if req.Method == "total" && runtime.OutgoingMetadata(ctx)["stop"] != "" {
			return errors.New("stopped")
		}
		return next(ctx, req, reply)
	}))
	fleet := testsvc.NewFleetClient(c, topic)
	if names, err := fleet.GatherTotal(ctxTimeout(t, 5e9), 1); err != nil || len(names) != 1 {
		t.Fatalf("GatherName: %v, %v", names, err)
	}
	if _, err := fleet.GatherTotal(runtime.WithMetadata(ctxTimeout(t, 5e9), runtime.Metadata{"stop": "1"}), 1); err == nil || err.Error() != "gather "+topic+"/total: stopped" {
		t.Errorf("stopped gather: %v", err)
	}
	if !slices.Equal(modes, []runtime.Mode{runtime.CallAll, runtime.CallAll}) {
		t.Errorf("modes %v", modes)
	}
}
