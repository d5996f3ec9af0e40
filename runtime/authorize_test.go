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
