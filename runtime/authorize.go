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

// admits says whether p lets id call method of svc (nil for a method the
// server has not; describer for describe.Request); an error when Groups
// panicked.
func (p *Policy) admits(id Identity, svc *ServiceDesc, method string) (ok bool, err error) {
	if svc == nil { // a method the server has not: refused as one the caller may not call, so that it learns nothing
		return false, nil
	}
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
	grouped := false
	for _, w := range who {
		switch {
		case w == principalAnyone:
			return true, nil
		case w == principalVerified:
			if id.Verified {
				return true, nil
			}
		case strings.HasPrefix(w, principalUser):
			if id.Verified && id.User == w[len(principalUser):] {
				return true, nil
			}
		case strings.HasPrefix(w, principalOsloUser):
			if id.OsloUser == w[len(principalOsloUser):] {
				return true, nil
			}
		case strings.HasPrefix(w, principalOsloProject):
			if id.OsloProject == w[len(principalOsloProject):] {
				return true, nil
			}
		case strings.HasPrefix(w, principalGroup):
			if !grouped {
				if groups, err = p.groups(id); err != nil {
					return false, err
				}
				grouped = true
			}
			if slices.Contains(groups, w[len(principalGroup):]) {
				return true, nil
			}
		}
	}
	return false, nil
}

// groups returns p.Groups(id), or an error when it panics: a request,
// not the server, fails.
func (p *Policy) groups(id Identity) (groups []string, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("the policy's Groups panicked: %v", v)
		}
	}()
	return p.Groups(id), nil
}

// clone returns a copy of p that the caller's later changes to its map
// do not touch.
func (p Policy) clone() *Policy {
	methods := make(map[string][]string, len(p.Methods))
	for m, who := range p.Methods {
		methods[m] = slices.Clone(who)
	}
	p.Methods = methods
	return &p
}

// unknown returns the methods p names that no service of sv has: a
// mistake that "*" would otherwise cover silently.
func (p *Policy) unknown(sv *services) []string {
	var names []string
	for m := range p.Methods {
		if m == "*" || m == describe.Request {
			continue
		}
		if _, ok := sv.methods[m]; ok {
			continue
		}
		svc, wireName, ok := strings.Cut(m, ".")
		if got, has := sv.methods[wireName]; ok && has && got.desc.ServiceName == svc {
			continue
		}
		names = append(names, m)
	}
	slices.Sort(names)
	return names
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

// admits says whether g's policy lets id call method of svc; when it
// cannot say, it sets *failure.
func (g *callerGate) admits(id Identity, svc *ServiceDesc, method string, failure **Error) bool {
	ok, err := g.policy.admits(id, svc, method)
	if err != nil {
		*failure = &Error{Code: CodeInternal, Message: "authorization failed: " + err.Error()}
	}
	return ok
}

// admit returns the failure to answer req, from id, with, or nil when its
// method may run. A server that checks nobody looks nothing up.
func (sv *services) admit(id Identity, req *wire.In) *Error {
	g := &sv.gate
	if !g.refuseAnonymous && g.policy == nil {
		return nil
	}
	svc := sv.serviceOf(req.Method) // nil for a method the server has not
	what, kind := "method "+wire.Clip(req.Method), req.Method
	switch {
	case req.Method == describe.Request:
		what = "describing the server"
	case svc == nil: // the caller's word, not a method of the server's
		kind = "(unknown)"
	}
	var failure *Error
	switch {
	case g.refuseAnonymous && id.Anonymous():
		g.unauthenticated.Add(1)
		failure = &Error{Code: CodeUnauthenticated, Message: fmt.Sprintf("%s refused: the request names no user the broker checked (user_id), and the server serves no anonymous callers", what)}
	case g.policy != nil && !g.admits(id, svc, req.Method, &failure):
		if failure != nil {
			break
		}
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
	kind = "refused " + kind + " " + id.User
	sv.throttle.log(sv.log, slog.LevelWarn, kind, "amqprpc: request refused", "method", clip(req.Method), "correlation_id", clip(req.MsgID),
		"caller", id.String(), "code", string(failure.Code))
	return failure
}

// checkPolicy returns why the server's policy (WithAuthorization) names
// methods that it does not serve, or nil.
func (s *Server) checkPolicy() error {
	if s.gate.policy == nil {
		return nil
	}
	if names := s.gate.policy.unknown(&s.services); len(names) > 0 {
		return fmt.Errorf("amqprpc: WithAuthorization names methods that the server does not serve: %s (a method is its wire name, or Interface.wirename)", strings.Join(names, ", "))
	}
	return nil
}
