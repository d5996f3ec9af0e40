package runtime_test

import (
	"context"
	"strings"
	"testing"

	"github.com/amqprpc/amqprpc/describe"
	"github.com/amqprpc/amqprpc/internal/testsvc"
	"github.com/amqprpc/amqprpc/runtime"
)

// authorized is a Local serving Arith under policy, to callers named by
// WithUserID (as verified: in one process nobody else publishes).
func authorized(t *testing.T, policy runtime.Policy, opts ...runtime.LocalOption) *runtime.Local {
	t.Helper()
	l := runtime.NewLocal("arith", append(opts, runtime.WithAuthorization(policy))...)
	t.Cleanup(func() { l.Close() })
	testsvc.RegisterArithServer(l.Server("main"), new(testsvc.ArithImpl))
	return l
}

// TestPolicy: who may call which method, by user, group, any verified
// caller, anyone, and the interface's name; describe.Request is a method
// like the others; the refusals' codes reach the caller.
func TestPolicy(t *testing.T) {
	policy := runtime.Policy{
		Methods: map[string][]string{
			"add":            {"user:alice"},
			"Arith.div":      {"group:ops"},
			"div":            {"anyone"}, // Arith.div comes first
			"echo":           {"anyone"},
			describe.Request: {"verified"},
			"*":              {"group:ops"},
		},
		Groups: func(id runtime.Identity) []string {
			if id.User == "carol" {
				return []string{"ops"}
			}
			return nil
		},
	}
	ctx := context.Background()
	describeReq := runtime.Request{Target: runtime.Target{Topic: "arith"}, Method: describe.Request, Args: struct{}{}}
	for _, tc := range []struct {
		user                       string
		add, div, sum, echo, descr runtime.Code // "" for allowed
	}{
		{"alice", "", runtime.CodePermissionDenied, runtime.CodePermissionDenied, "", ""},
		{"carol", runtime.CodePermissionDenied, "", "", "", ""},
		{"", runtime.CodeUnauthenticated, runtime.CodeUnauthenticated, runtime.CodeUnauthenticated, "", runtime.CodeUnauthenticated},
	} {
		var opts []runtime.LocalOption
		if tc.user != "" {
			opts = append(opts, runtime.WithUserID(tc.user))
		}
		l := authorized(t, policy, opts...)
		arith := testsvc.NewArithClient(l, "arith")
		_, err := arith.Add(ctx, 1, 2)
		check := func(method string, err error, want runtime.Code) {
			t.Helper()
			if got := remoteCode(err); got != want || want == "" && err != nil {
				t.Errorf("%s by %q: %v; want code %q", method, tc.user, err, want)
			}
		}
		check("add", err, tc.add)
		_, err = arith.Div(ctx, 4, 2)
		check("div", err, tc.div)
		_, err = arith.Sum(ctx, 1, 2)
		check("sum", err, tc.sum)
		_, err = arith.Echo(ctx, testsvc.Payload{Name: "x"})
		check("echo", err, tc.echo)
		var d describe.Server
		check("describe", l.Invoke(ctx, describeReq, &d), tc.descr)
	}
}

// TestPolicyMistakes: a principal the policy cannot read is a programming
// error, found when the option is made.
func TestPolicyMistakes(t *testing.T) {
	for _, tc := range []struct {
		policy runtime.Policy
		want   string
	}{
		{runtime.Policy{Methods: map[string][]string{"add": {"usr:bob"}}}, `"usr:bob"`},
		{runtime.Policy{Methods: map[string][]string{"add": {"user:"}}}, `"user:"`},
		{runtime.Policy{Methods: map[string][]string{"add": {"group:ops"}}}, "no Groups"},
	} {
		func() {
			defer func() {
				p := recover()
				if s, _ := p.(string); !strings.Contains(s, tc.want) {
					t.Errorf("WithAuthorization(%v) panicked with %v; want a panic naming %s", tc.policy.Methods, p, tc.want)
				}
			}()
			runtime.WithAuthorization(tc.policy)
		}()
	}
}

// TestPolicyFaults: what a policy's mistakes and a caller's probing come
// to: a Groups that panics fails the request, not the server; the policy's
// map is the server's own once given; a caller refused learns nothing of
// the methods the server has; a policy naming a method the server does
// not serve stops Serve, before it connects.
func TestPolicyFaults(t *testing.T) {
	ctx := context.Background()
	methods := map[string][]string{"add": {"group:ops"}, "sum": {"user:alice"}}
	l := authorized(t, runtime.Policy{Methods: methods, Groups: func(runtime.Identity) []string {
		var m map[string]bool
		m["x"] = true // panics
		return nil
	}}, runtime.WithUserID("alice"))
	methods["sum"] = []string{"user:nobody"} // after the option: no effect
	arith := testsvc.NewArithClient(l, "arith")
	if _, err := arith.Add(ctx, 1, 2); remoteCode(err) != runtime.CodeInternal {
		t.Errorf("add, whose Groups panics: %v; want internal", err)
	}
	if sum, err := arith.Sum(ctx, 1, 2); err != nil || sum != 3 {
		t.Errorf("sum by alice, after the caller's map changed: %d, %v", sum, err)
	}

	err := l.Invoke(ctx, runtime.Request{Target: runtime.Target{Topic: "arith"}, Method: "no_such_method", Args: struct{}{}}, nil)
	if remoteCode(err) != runtime.CodePermissionDenied {
		t.Errorf("a method the policy does not name, which the server has not: %v; want permission_denied, not unimplemented", err)
	}
	// Nor when "*" admits the caller: a method the server has not is
	// refused as one it has and the policy keeps from the caller.
	open := authorized(t, runtime.Policy{Methods: map[string][]string{"*": {"verified"}, "sum": {"user:root"}}}, runtime.WithUserID("eve"))
	for _, method := range []string{"sum", "no_such_method"} {
		err := open.Invoke(ctx, runtime.Request{Target: runtime.Target{Topic: "arith"}, Method: method, Args: struct{}{}}, nil)
		if remoteCode(err) != runtime.CodePermissionDenied {
			t.Errorf("%s by eve under a policy whose * admits her: %v; want permission_denied", method, err)
		}
	}
	anon := runtime.NewLocal("arith", runtime.WithAnonymousCallers(false))
	defer anon.Close()
	testsvc.RegisterArithServer(anon.Server("main"), new(testsvc.ArithImpl))
	err = anon.Invoke(ctx, runtime.Request{Target: runtime.Target{Topic: "arith"}, Method: "no_such_method", Args: struct{}{}}, nil)
	if remoteCode(err) != runtime.CodeUnauthenticated {
		t.Errorf("an anonymous caller's unknown method: %v; want unauthenticated", err)
	}

	srv := runtime.NewServer("amqp://guest:guest@127.0.0.1:1/", "arith",
		runtime.WithAuthorization(runtime.Policy{Methods: map[string][]string{"add": {"anyone"}, "Arith.dvi": {"anyone"}, "Store.add": {"anyone"}, "*": {"verified"}}}))
	testsvc.RegisterArithServer(srv, new(testsvc.ArithImpl))
	if err := srv.Serve(); err == nil || !strings.Contains(err.Error(), "Arith.dvi, Store.add") {
		t.Errorf("Serve with a policy naming methods the server has not: %v; want them named", err)
	}
}
