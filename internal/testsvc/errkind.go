package testsvc

import (
	"context"
	"errors"

	"github.com/amqprpc/amqprpc/runtime"
)

// ErrorKind classifies the error a request ended with, for the fault
// tests' reports: by the transport error, the server's code, or the
// deadline; "other" is an error no documentation defines.
func ErrorKind(err error) string {
	var rerr *runtime.Error
	switch {
	case errors.Is(err, runtime.ErrConnectionLost):
		return "connection_lost"
	case errors.Is(err, runtime.ErrReconnecting):
		return "reconnecting"
	case errors.Is(err, runtime.ErrBlocked):
		return "blocked"
	case errors.Is(err, runtime.ErrNoServer):
		return "no_server"
	case errors.Is(err, runtime.ErrNacked):
		return "nacked"
	case errors.As(err, &rerr):
		return "remote_" + string(rerr.Code)
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline"
	}
	return "other"
}
