package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/amqprpc/amqprpc/internal/wire"
)

// Transport errors. They describe what happened to a request between the
// client and the broker; errors reported by a server are *Error values.
var (
	// ErrNoServer is returned for a request the broker could not route: no
	// queue is bound for its topic (or server), so no server can ever see
	// it. It is returned as soon as the broker says so, not at the deadline.
	ErrNoServer = errors.New("amqprpc: no server is bound to the topic")

	// ErrConnectionLost is returned by calls that were waiting for a reply
	// when the client's connection or channel to the broker closed: a
	// reply goes to a queue exclusive to the connection that asked for it,
	// and cannot survive its loss. Calls made afterwards wait for the
	// client to reconnect, until their deadline (ErrReconnecting).
	ErrConnectionLost = errors.New("amqprpc: connection to the broker lost")

	// ErrClosed is returned by calls on a Client that has been closed,
	// including calls that were waiting for a reply when Close was called.
	ErrClosed = errors.New("amqprpc: client closed")

	// ErrReconnecting is returned, along with the context's error, by a
	// request whose deadline passed while the client was not connected to
	// any broker and was trying to reconnect.
	ErrReconnecting = errors.New("amqprpc: not connected to the broker; reconnecting")

	// ErrBlocked is returned, along with the context's error, by a request
	// whose deadline passed while the broker blocked the client's
	// publications, as it does during a memory or disk alarm.
	ErrBlocked = errors.New("amqprpc: the broker blocks publishers (memory or disk alarm)")

	// ErrTooLarge is returned for a request whose body is larger than the
	// client's limit (WithMaxBodySize); nothing is sent.
	ErrTooLarge = errors.New("amqprpc: request body too large")

	// ErrNacked is returned at once by a request that the broker refused
	// to take (a nack), published in confirm mode: a cast, a call with
	// request confirms (the Safe profile, WithRequestConfirms), and a call
	// to a topic whose replies have said that its queue has a limit
	// (WithQueueLimit); any other call the broker refuses ends at its
	// deadline. The broker
	// refuses a request when the topic's queue is full (the error is then
	// also ErrOverloaded), or, rarely, when it fails to take it.
	ErrNacked = errors.New("amqprpc: the broker refused the message")

	// ErrOverloaded is returned at once by a call or a cast that the
	// broker refused: the topic's queue holds as many requests as its
	// servers set (WithQueueLimit), and they have more work than they can
	// do. errors.Is(err, ErrNacked) holds too. Calls are refused so, at
	// once, from the first reply that said the queue has a limit (see
	// ErrNacked). The broker does not say why
	// it refuses: a request routed to a queue whose node failed before it
	// took the request (a server's own queue, a classic topic queue) is
	// reported alike.
	ErrOverloaded = errors.New("amqprpc: the topic's queue is full: its servers are overloaded")

	// ErrNameTooLong is returned, without sending anything, for a request
	// whose routing key (its topic, and the server it names) or a
	// metadata key is longer than the 255 bytes an AMQP short string
	// holds: the broker would close the connection over it.
	ErrNameTooLong = errors.New("amqprpc: too long for an AMQP name (at most 255 bytes)")

	// ErrMalformedReply is returned when a reply arrives but cannot be
	// decoded into the call's result type.
	ErrMalformedReply = errors.New("amqprpc: malformed reply")

	// ErrVersionCap is returned, without sending anything, for a method
	// introduced in a later version of its interface than the client's
	// version cap (Target.VersionCap) allows.
	ErrVersionCap = errors.New("amqprpc: method is newer than the client's version cap")

	// ErrServerSilent is returned by a call whose server sent neither a
	// heartbeat nor the reply for as long as the call monitor allows
	// (OsloConfig.CallMonitorTimeout): it died, or lost the request.
	ErrServerSilent = errors.New("amqprpc: the server stopped sending heartbeats")

	// ErrServerClosed is returned by Server.Serve after Server.Shutdown.
	ErrServerClosed = errors.New("amqprpc: server closed")

	// ErrAccessRefused is returned for a request that the broker refused
	// because of who sent it: the client's user may not publish to the
	// request's exchange, or to its topic there (RabbitMQ's topic
	// permissions), or the request's user_id is not the user the client's
	// connection logged in as (WithUserID). The error carries the broker's
	// own words. The broker closes the channel the request went on, and
	// drops what was published there after it: the client sends those
	// again (a gather, which may have reached some servers, fails with
	// ErrConnectionLost), and the calls published before it get their
	// replies, which come on a channel of their own. So that a caller that
	// tries again does not close channels again and again, requests to the
	// same exchange and topic fail with the same error, unsent, for
	// refusalMemory (a second) after.
	ErrAccessRefused = errors.New("amqprpc: the broker refused access")
)

// Code classifies an error reported by a server, as gRPC's codes do. Codes
// cross the wire as the strings below (see docs/PROTOCOL.md). Methods set
// one by returning an error made by Errorf.
type Code string

const (
	// CodeUnknown is the code of an error returned by a method that did not
	// set one.
	CodeUnknown Code = "unknown"
	// CodeMalformed means the request was not a valid amqprpc message: not
	// JSON, or without a method name.
	CodeMalformed Code = "malformed"
	// CodeInvalidArgument means the arguments are not valid: they could not
	// be decoded into the method's parameter types, or the method says so.
	CodeInvalidArgument Code = "invalid_argument"
	// CodeUnimplemented means the server has no method of that name.
	CodeUnimplemented Code = "unimplemented"
	// CodeUnsupportedVersion means the server's version of the interface
	// cannot serve the version the request asks for: an older minor
	// version, or another major version.
	CodeUnsupportedVersion Code = "unsupported_version"
	// CodeInternal means the server failed while handling the request, for
	// example because the method panicked or its result could not be encoded.
	CodeInternal Code = "internal"
	// CodeNotFound means something the request names does not exist.
	CodeNotFound Code = "not_found"
	// CodeAlreadyExists means something the request would create exists.
	CodeAlreadyExists Code = "already_exists"
	// CodePermissionDenied means the caller may not do what it asks.
	CodePermissionDenied Code = "permission_denied"
	// CodeUnauthenticated means the caller's identity could not be checked.
	CodeUnauthenticated Code = "unauthenticated"
	// CodeFailedPrecondition means the system is not in a state in which the
	// request can be carried out.
	CodeFailedPrecondition Code = "failed_precondition"
	// CodeAborted means the request was abandoned, typically because of a
	// concurrency conflict; it may be retried at a higher level.
	CodeAborted Code = "aborted"
	// CodeOutOfRange means an argument is past a valid range.
	CodeOutOfRange Code = "out_of_range"
	// CodeResourceExhausted means a quota or a resource ran out.
	CodeResourceExhausted Code = "resource_exhausted"
	// CodeUnavailable means the server cannot handle the request now; it
	// may be retried.
	CodeUnavailable Code = "unavailable"
	// CodeDeadlineExceeded means the request's deadline passed on the server.
	CodeDeadlineExceeded Code = "deadline_exceeded"
	// CodeCanceled means the request was canceled.
	CodeCanceled Code = "canceled"
	// CodeDataLoss means data was lost or corrupted.
	CodeDataLoss Code = "data_loss"
)

// Error is an error reported by a server. A client receives every error that
// a server sends as an *Error, found with errors.As:
//
//	var rerr *runtime.Error
//	if errors.As(err, &rerr) && rerr.Code == runtime.CodeNotFound { ... }
//
// When the server's error was one of the errors its service declares
// (ServiceDesc.Errors), the client's *Error wraps an equal error, so that
// errors.Is and errors.As find it as on the server.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
	// Type is the registered name of the declared error, if the error was
	// one.
	Type string `json:"type,omitempty"`
	// Detail is the JSON form of a declared error type's value.
	Detail json.RawMessage `json:"detail,omitempty"`
	// Module and Class name the Python exception that an oslo.messaging
	// peer sent or is sent (WithOslo, OsloException), such as "builtins"
	// and "ValueError", and Traceback is its traceback, as Python formats
	// it. amqprpc's own protocol does not carry them.
	Module    string   `json:"-"`
	Class     string   `json:"-"`
	Traceback []string `json:"-"`

	cause error
}

// Errorf returns an error with code whose message is formatted as by
// fmt.Errorf; a method returns it to give its caller a code. A %w verb
// wraps an error as fmt.Errorf does, so that a declared error wrapped this
// way keeps its identity on the client too.
func Errorf(code Code, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &Error{Code: code, Message: err.Error(), cause: errors.Unwrap(err)}
}

// Error implements the error interface.
func (e *Error) Error() string {
	if e.Class != "" {
		return fmt.Sprintf("amqprpc: remote error: %s: %s.%s: %s", e.Code, e.Module, e.Class, e.Message)
	}
	return fmt.Sprintf("amqprpc: remote error: %s: %s", e.Code, e.Message)
}

// Unwrap returns the error e stands for: on the server, what Errorf
// wrapped; on the client, the declared error the server returned.
func (e *Error) Unwrap() error { return e.cause }

// Is reports whether e stands for target: an error with
// CodeDeadlineExceeded is context.DeadlineExceeded, and one with
// CodeCanceled is context.Canceled, so that a call whose method ran out of
// time matches as a call that did.
func (e *Error) Is(target error) bool {
	switch target {
	case context.DeadlineExceeded:
		return e.Code == CodeDeadlineExceeded
	case context.Canceled:
		return e.Code == CodeCanceled
	}
	return false
}

// ErrorDesc describes an error whose identity crosses the wire. Make one
// with SentinelError or TypedError; amqprpc-gen does so for the errors an
// interface declares with //amqprpc:errors.
type ErrorDesc struct {
	// Type is the error's name on the wire: its Go package path and name.
	Type string
	// match reports whether err is this error, and returns the value to
	// send as the error's detail, if any.
	match func(err error) (detail any, ok bool)
	// decode makes the client's copy of the error from its detail.
	decode func(detail json.RawMessage) error
}

// SentinelError describes a sentinel error, such as io.EOF: a server error
// for which errors.Is(err, sentinel) holds reaches the client as an error
// for which it holds too.
func SentinelError(name string, sentinel error) ErrorDesc {
	return ErrorDesc{
		Type:   name,
		match:  func(err error) (any, bool) { return nil, errors.Is(err, sentinel) },
		decode: func(json.RawMessage) error { return sentinel },
	}
}

// TypedError describes an error type E, such as *fs.PathError: a server
// error for which errors.As finds an E reaches the client with a copy of
// that E, sent as JSON, for errors.As to find there.
func TypedError[E error](name string) ErrorDesc {
	return ErrorDesc{
		Type: name,
		match: func(err error) (any, bool) {
			e, ok := errors.AsType[E](err)
			return e, ok
		},
		decode: func(detail json.RawMessage) error {
			var e E
			if len(detail) > 0 {
				if err := json.Unmarshal(detail, &e); err != nil {
					return nil
				}
			}
			return e
		},
	}
}

// toError converts an error returned by a method into the error sent on the
// wire: an *Error in err's chain keeps its code and message; a context's
// deadline or cancellation gets CodeDeadlineExceeded or CodeCanceled;
// anything else gets CodeUnknown and err's message. A declared error of
// desc is named.
func toError(err error, desc *ServiceDesc) *Error {
	wire := &Error{Code: CodeUnknown, Message: err.Error(), cause: err} // the cause stays on the server
	if rerr, ok := errors.AsType[*Error](err); ok {
		wire.Code, wire.Message = rerr.Code, rerr.Message
	} else if errors.Is(err, context.DeadlineExceeded) {
		wire.Code = CodeDeadlineExceeded
	} else if errors.Is(err, context.Canceled) {
		wire.Code = CodeCanceled
	}
	for _, ed := range desc.Errors {
		detail, ok := ed.match(err)
		if !ok {
			continue
		}
		wire.Type = ed.Type
		if detail != nil {
			if b, err := json.Marshal(detail); err == nil {
				wire.Detail = b
			}
		}
		break
	}
	return wire
}

// fromError gives a server's error the identity of the declared error it
// names, if desc declares it.
func fromError(e *Error, desc *ServiceDesc) *Error {
	if e.Type == "" || desc == nil {
		return e
	}
	for _, ed := range desc.Errors {
		if ed.Type == e.Type {
			e.cause = ed.decode(e.Detail)
			break
		}
	}
	return e
}

// failure is e as it travels, for a peer that speaks oslo (nil when not
// oslo.messaging's protocol): a Python exception is named by the
// OsloException that e matches, if any.
func (e *Error) failure(oslo *OsloConfig) *wire.Failure {
	f := &wire.Failure{Code: string(e.Code), Message: e.Message, Type: e.Type, Detail: e.Detail, Module: e.Module, Class: e.Class}
	if oslo != nil && f.Class == "" {
		f.Module, f.Class, _ = oslo.exceptionOf(e)
	}
	return f
}

// remoteError is the *Error that failure f, received, stands for, with the
// identity of the declared error of svc, or of the OsloException of oslo,
// that it names.
func remoteError(f *wire.Failure, svc *ServiceDesc, oslo *OsloConfig) *Error {
	e := &Error{Code: Code(f.Code), Message: f.Message, Type: f.Type, Detail: f.Detail, Module: f.Module, Class: f.Class, Traceback: f.Traceback}
	if oslo != nil {
		oslo.received(e)
	}
	return fromError(e, svc)
}

// shortString returns an error wrapping ErrNameTooLong that says what s
// is, when s does not fit an AMQP short string.
func shortString(what, s string) error {
	if len(s) > wire.MaxShortString {
		return fmt.Errorf("%w: %s %s of %d bytes", ErrNameTooLong, what, wire.Clip(s), len(s))
	}
	return nil
}
