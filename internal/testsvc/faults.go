package testsvc

import (
	"io"
	"log/slog"
	"time"

	"github.com/amqprpc/amqprpc/runtime"
)

// FaultOptions are the options of a client or a server under the fault
// tests (make chaos, make cluster-test), then more: quick reconnection,
// heartbeats that notice a stalled link or a dead node in about 3 s, and
// no logs: faults make them log a lot, which a failing test's output does
// not need. O is runtime.ClientOption or runtime.ServerOption.
func FaultOptions[O runtime.LocalOption](more ...O) []O {
	common := []runtime.Option{
		runtime.WithReconnectBackoff(50*time.Millisecond, time.Second),
		runtime.WithHeartbeat(time.Second),
		runtime.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
	}
	opts := make([]O, 0, len(common)+len(more))
	for _, o := range common {
		opts = append(opts, any(o).(O)) // an Option is both
	}
	return append(opts, more...)
}
