package runtime

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/amqprpc/amqprpc/internal/wire"
)

// OsloConfig is what a client or a server speaking oslo.messaging's
// protocol (WithOslo) must agree on with the OpenStack services on its
// broker: the settings of their [DEFAULT] and [oslo_messaging_rabbit]
// sections that shape what they declare, so that every exchange and queue
// a Go peer declares is the one a Python peer declares too, whichever
// starts first (docs/PROTOCOL.md, oslo.messaging).
type OsloConfig struct {
	// ControlExchange is the topic exchange that requests go to:
	// control_exchange, set by each service ("nova", "neutron", ...).
	// Default: "openstack", oslo.messaging's.
	ControlExchange string
	// DurableQueues is amqp_durable_queues: the control exchange and the
	// topic's queues are durable.
	DurableQueues bool
	// AutoDelete is amqp_auto_delete: the control exchange and the topic's
	// queues are deleted when their last binding or consumer goes.
	AutoDelete bool
	// QuorumQueues is rabbit_quorum_queue: the topic's queues are quorum
	// queues, and the control exchange durable.
	QuorumQueues bool
	// QuorumDeliveryLimit, QuorumMaxMemoryLength and QuorumMaxMemoryBytes
	// are rabbit_quorum_delivery_limit, rabbit_quorum_max_memory_length
	// and rabbit_quorum_max_memory_bytes (spelt "quroum" in
	// oslo.messaging 14): arguments of the quorum queues, when not 0.
	QuorumDeliveryLimit   int
	QuorumMaxMemoryLength int
	QuorumMaxMemoryBytes  int
	// CallMonitorTimeout is a client's call_monitor_timeout: when set, its
	// calls ask the server for a heartbeat every half of it while the
	// method runs, and fail with ErrServerSilent when none comes for that
	// long. The call's deadline still bounds it. Client only.
	CallMonitorTimeout time.Duration
	// Exceptions maps Go errors to the Python exceptions that oslo.messaging
	// callers catch, and back (see OsloException). Errors that none
	// matches map by their Code (docs/PROTOCOL.md).
	Exceptions []OsloException
}

// DefaultControlExchange is oslo.messaging's control_exchange.
const DefaultControlExchange = "openstack"

// OsloException is a Python exception that a Go error stands for, between
// oslo.messaging peers. A server sends an error that matches Err
// (errors.Is) or, for an entry without Err, whose Code is Code, as the
// exception Module.Class: a Python caller that lists Module in its
// allowed_remote_exmods raises that class, with the error's message as
// its only argument; one that does not raises oslo_messaging.RemoteError.
// A client receives the exception Module.Class as an *Error with Code,
// wrapping Err, so that errors.Is(err, Err) holds.
type OsloException struct {
	Module, Class string
	Err           error
	Code          Code
}

// WithOslo makes a client or a server speak oslo.messaging's RPC protocol,
// as OpenStack services do, instead of amqprpc's own: its envelope, its
// topology, declared with the flags cfg gives, its request context
// (WithOsloContext), failures and heartbeats. Requests go to
// cfg.ControlExchange, unless WithExchange names another. A server
// acknowledges a request when it takes it, before running it, as
// oslo.messaging servers do (at most once), unless WithAckAfterReply or
// WithProfile says otherwise, in whichever order they are given. The
// options of amqprpc's own topology (WithQueueType, WithQueueExpiry,
// WithDeliveryLimit, WithDeadLetterExchange) do not apply: cfg says what
// is declared. Generated code is the same for both protocols; an
// interface's namespace is //amqprpc:namespace.
func WithOslo(cfg OsloConfig) Option {
	return option(func(c *options) {
		if cfg.ControlExchange == "" {
			cfg.ControlExchange = DefaultControlExchange
		}
		c.oslo = &cfg
	})
}

// settings are the wire's settings of cfg, with requests going to
// exchange.
func (cfg *OsloConfig) settings(exchange string) wire.OsloSettings {
	return wire.OsloSettings{Exchange: exchange, DurableQueues: cfg.DurableQueues, AutoDelete: cfg.AutoDelete, QuorumQueues: cfg.QuorumQueues,
		QuorumDeliveryLimit: cfg.QuorumDeliveryLimit, QuorumMaxMemoryLength: cfg.QuorumMaxMemoryLength, QuorumMaxMemoryBytes: cfg.QuorumMaxMemoryBytes}
}

// exceptionOf returns the Python exception that e is sent as, when an
// OsloException of cfg matches it: the first whose Err e wraps
// (errors.Is), or, for one without Err, whose Code is e's.
func (cfg *OsloConfig) exceptionOf(e *Error) (module, class string, ok bool) {
	for _, x := range cfg.Exceptions {
		if (x.Err != nil && errors.Is(e, x.Err)) || (x.Err == nil && x.Code != "" && x.Code == e.Code) {
			return x.Module, x.Class, true
		}
	}
	return "", "", false
}

// received gives e, a Python exception received, the Code and the identity
// of the OsloException of cfg that names its class, if one does.
func (cfg *OsloConfig) received(e *Error) {
	module := e.Module
	if module == "exceptions" { // Python 2's builtins
		module = "builtins"
	}
	for _, x := range cfg.Exceptions {
		if x.Module == module && x.Class == e.Class {
			e.cause = x.Err
			if x.Code != "" {
				e.Code = x.Code
			}
			return
		}
	}
}

// OsloRequestContext is the request context of an oslo.messaging request:
// the caller's RequestContext.to_dict(), such as user_id, project_id,
// request_id and global_request_id. It logs without auth_token.
type OsloRequestContext map[string]any

// LogValue hides auth_token, which travels in clear.
func (rc OsloRequestContext) LogValue() slog.Value {
	attrs := make([]slog.Attr, 0, len(rc))
	for _, k := range sortedKeys(rc) {
		v := rc[k]
		if k == "auth_token" {
			v = "<redacted>"
		}
		attrs = append(attrs, slog.Any(k, v))
	}
	return slog.GroupValue(attrs...)
}

func sortedKeys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }

type osloContextKey struct{}

// WithOsloContext returns ctx carrying rc, the request context that a
// client speaking oslo.messaging (WithOslo) sends with each request made
// with it, as "_context_<key>" entries.
func WithOsloContext(ctx context.Context, rc map[string]any) context.Context {
	return context.WithValue(ctx, osloContextKey{}, OsloRequestContext(rc))
}

// OsloContext returns the oslo.messaging request context of ctx: in a
// method's context, the one its caller sent; elsewhere, the one
// WithOsloContext put there; nil if none. A method that calls on with its
// context sends its caller's request context on, as OpenStack services do.
func OsloContext(ctx context.Context) OsloRequestContext {
	rc, _ := ctx.Value(osloContextKey{}).(OsloRequestContext)
	return rc
}
