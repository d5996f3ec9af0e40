package runtime

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/amqprpc/amqprpc/describe"
	"github.com/amqprpc/amqprpc/internal/wire"
)

// Policy says who may call which methods of a server (WithAuthorization).
// It is checked before a request's method, and before every interceptor,
// runs; describe.Request, which every server answers, is a method like the
// others.
//
//	runtime.WithAuthorization(runtime.Policy{
//		Methods: map[string][]string{
//			"add":            {"user:alice", "group:ops"},
//			"Calculator.div": {"verified"},
//			describe.Request: {"anyone"},
//		},
//		Groups: func(id runtime.Identity) []string { return groups[id.User] },
//	})
type Policy struct {
	// Methods maps a method to who may call it. A method is named by its
	// wire name ("add"), or by its interface's Go name and its wire name
	// ("Calculator.add"), which comes first; "*" stands for every method
	// that the map does not name. A method that it does not name, with no
	// "*", nobody may call.
	//
	// Who may call it is a list of principals, any of which admits a
	// caller (Identity):
	//   - "user:NAME": the broker user NAME, verified;
	//   - "group:NAME": a caller that Groups puts in group NAME;
	//   - "verified": any verified caller;
	//   - "anyone": any caller, anonymous ones too;
	//   - "oslo-user:ID", "oslo-project:ID": a caller whose oslo.messaging
	//     request context has that user_id or project_id, which the broker
	//     does not check (Identity.OsloUser).
	Methods map[string][]string
	// Groups, when set, returns the groups of a caller, for the principals
	// "group:NAME": from its user, or from its oslo identity.
	Groups func(Identity) []string
}

// principal kinds, as a Policy names them.
const (
	principalUser        = "user:"
	principalGroup       = "group:"
	principalOsloUser    = "oslo-user:"
	principalOsloProject = "oslo-project:"
	principalVerified    = "verified"
	principalAnyone      = "anyone"
)

// check returns why p's principals cannot be read, or nil.
func (p *Policy) check() error {
	for method, who := range p.Methods {
		for _, w := range who {
			switch {
			case w == principalVerified, w == principalAnyone:
			case strings.HasPrefix(w, principalGroup) && p.Groups == nil:
				return fmt.Errorf("method %q: principal %q names a group, and the policy has no Groups", method, w)
			case hasName(w, principalUser), hasName(w, principalGroup), hasName(w, principalOsloUser), hasName(w, principalOsloProject):
			default:
				return fmt.Errorf("method %q: principal %q is none of user:NAME, group:NAME, verified, anyone, oslo-user:ID, oslo-project:ID", method, w)
			}
		}
	}
	return nil
}

// hasName says that w is kind followed by a name.
func hasName(w, kind string) bool { return strings.HasPrefix(w, kind) && len(w) > len(kind) }

// admits says whether p lets id call method of svc (nil for describe).
func (p *Policy) admits(id Identity, svc *ServiceDesc, method string) bool {
	who, ok := []string(nil), false
	if svc != nil && svc != describer {
		who, ok = p.Methods[svc.ServiceName+"."+method]
	}
	if !ok {
		who, ok = p.Methods[method]
	}
	if !ok {
		who = p.Methods["*"]
	}
	var groups []string
	for _, w := range who {
		switch {
		case w == principalAnyone:
			return true
		case w == principalVerified:
			if id.Verified {
				return true
			}
		case strings.HasPrefix(w, principalUser):
			if id.Verified && id.User == w[len(principalUser):] {
				return true
			}
		case strings.HasPrefix(w, principalOsloUser):
			if id.OsloUser == w[len(principalOsloUser):] {
				return true
			}
		case strings.HasPrefix(w, principalOsloProject):
			if id.OsloProject == w[len(principalOsloProject):] {
				return true
			}
		case strings.HasPrefix(w, principalGroup):
			if groups == nil {
				groups = p.Groups(id)
			}
			if slices.Contains(groups, w[len(principalGroup):]) {
				return true
			}
		}
	}
	return false
}

// callerGate is what a server checks of a caller before it runs a method: that
// it is not anonymous, when anonymous callers are refused, and what its
// policy allows; with the counts of its refusals.
type callerGate struct {
	refuseAnonymous bool
	policy          *Policy // nil: every caller may call every method
	unauthenticated atomic.Uint64
	denied          atomic.Uint64
}

// admit returns the failure to answer req, from id, with, or nil when its
// method m of svc may run.
func (sv *services) admit(id Identity, svc *ServiceDesc, req *wire.In) *Error {
	g := &sv.gate
	if !g.refuseAnonymous && g.policy == nil {
		return nil
	}
	what := "method " + req.Method // one the server has
	if req.Method == describe.Request {
		what = "describing the server"
	}
	var failure *Error
	switch {
	case g.refuseAnonymous && id.Anonymous():
		g.unauthenticated.Add(1)
		failure = &Error{Code: CodeUnauthenticated, Message: fmt.Sprintf("%s refused: the request names no user the broker checked (user_id), and the server serves no anonymous callers", what)}
	case g.policy != nil && !g.policy.admits(id, svc, req.Method):
		if id.Anonymous() {
			g.unauthenticated.Add(1)
			failure = &Error{Code: CodeUnauthenticated, Message: fmt.Sprintf("%s refused: it needs a caller the broker checked, and the request names none (user_id)", what)}
		} else {
			g.denied.Add(1)
			failure = &Error{Code: CodePermissionDenied, Message: fmt.Sprintf("%s refused: %s may not call it", what, id)}
		}
	default:
		return nil
	}
	// A line for each method and broker user (or anonymous), then at most
	// one every throttleEvery for each while they keep coming: the kinds are
	// as many as the methods and the broker's users, whatever callers send.
	kind := "refused " + req.Method + " " + id.User
	sv.throttle.log(sv.log, slog.LevelWarn, kind, "amqprpc: request refused", "method", req.Method, "correlation_id", clip(req.MsgID),
		"caller", id.String(), "code", string(failure.Code))
	return failure
}
