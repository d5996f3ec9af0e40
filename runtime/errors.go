package runtime

import (
	"errors"
	"fmt"
)

// Transport errors. They describe what happened to a call between the client
// and the broker; errors reported by a server are *Error values instead.
var (
	// ErrNoServer is returned by a call whose request the broker could not
	// route: no queue is bound for the topic, so no server can ever see it.
	// It is returned as soon as the broker says so, not at the deadline.
	ErrNoServer = errors.New("amqprpc: no server is bound to the topic")

	// ErrConnectionLost is returned by calls that were waiting for a reply
	// when the client's connection or channel to the broker closed, and by
	// calls made afterwards. A reply sent over direct reply-to cannot
	// survive the loss of the connection that asked for it.
	ErrConnectionLost = errors.New("amqprpc: connection to the broker lost")

	// ErrClosed is returned by calls on a Client that has been closed,
	// including calls that were waiting for a reply when Close was called.
	ErrClosed = errors.New("amqprpc: client closed")

	// ErrMalformedReply is returned when a reply arrives but cannot be
	// decoded into the call's result type.
	ErrMalformedReply = errors.New("amqprpc: malformed reply")

	// ErrServerClosed is returned by Server.Serve after Server.Shutdown.
	ErrServerClosed = errors.New("amqprpc: server closed")
)

// Code classifies an error reported by a server. Codes cross the wire as
// the strings below (see docs/PROTOCOL.md).
type Code string

const (
	// CodeUnknown is the code of an error returned by a method that did not
	// set one.
	CodeUnknown Code = "unknown"
	// CodeMalformed means the request was not a valid amqprpc message: not
	// JSON, or without a method name.
	CodeMalformed Code = "malformed"
	// CodeInvalidArgument means the arguments could not be decoded into the
	// method's parameter types.
	CodeInvalidArgument Code = "invalid_argument"
	// CodeUnimplemented means the server has no method of that name.
	CodeUnimplemented Code = "unimplemented"
	// CodeInternal means the server failed while handling the request, for
	// example because the method panicked or its result could not be encoded.
	CodeInternal Code = "internal"
)

// Error is an error reported by a server. A client receives every error that
// a server sends as an *Error, found with errors.As:
//
//	var rerr *runtime.Error
//	if errors.As(err, &rerr) && rerr.Code == runtime.CodeUnimplemented { ... }
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

// Error implements the error interface.
func (e *Error) Error() string {
	return fmt.Sprintf("amqprpc: remote error: %s: %s", e.Code, e.Message)
}

// toError converts an error returned by a method into the error sent on the
// wire: an *Error in err's chain is kept as it is, anything else gets
// CodeUnknown and err's message.
func toError(err error) *Error {
	if rerr, ok := errors.AsType[*Error](err); ok {
		return rerr
	}
	return &Error{Code: CodeUnknown, Message: err.Error()}
}
