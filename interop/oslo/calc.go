// Package oslo tests amqprpc's oslo.messaging protocol (runtime.WithOslo)
// against the real library: Python clients and servers of Debian's
// python3-oslo.messaging (py/) call Go servers and are called by Go
// clients, with the interfaces below, which mirror py/server.py's
// endpoints method for method.
package oslo

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/amqprpc/amqprpc/runtime"
)

//go:generate go run github.com/amqprpc/amqprpc/cmd/amqprpc-gen -type=Calc,Admin,Everyone -output=calc_amqprpc.go -asyncapi-oslo=calc_amqprpc.oslo.asyncapi.json

// ErrCalc is Fail's error; OsloExceptions maps it to Python's
// calcerrors.CalcError (py/calcerrors.py) both ways.
var ErrCalc = errors.New("calc failed")

// Calc is py/server.py's CalcEndpoint (target version 1.2), plus Mul,
// which only a 1.3 server has.
//
//amqprpc:version 1.3
//amqprpc:errors ErrCalc
type Calc interface {
	// Add returns v1 + v2.
	Add(v1, v2 int) int
	// NotifyMe records text: a cast, and (Everyone.NotifyMe) a fanout.
	//
	//amqprpc:cast
	NotifyMe(text string)
	// Notes returns what NotifyMe recorded.
	Notes() []string
	// SlowAdd returns v1 + v2 after delay seconds.
	SlowAdd(ctx context.Context, v1, v2 int, delay float64) (int, error)
	// Fail fails with ErrCalc, why as its message.
	Fail(why string) error
	// FailBuiltin fails with what Python calls a ValueError.
	FailBuiltin() error
	// Whoami returns the request context that the call came with.
	Whoami(ctx context.Context) (map[string]any, error)
	// Name returns the name of the server that answers.
	Name() string
	// Mul returns v1 * v2; it is newer than py/server.py's endpoint.
	//
	//amqprpc:since 1.3
	Mul(v1, v2 int) int
}

// Everyone is the fanout form of Calc.NotifyMe, for clients.
type Everyone interface {
	// NotifyMe records text on every server.
	//
	//amqprpc:fanout
	NotifyMe(text string)
}

// Pong is what Admin.Ping returns.
type Pong struct {
	Pong bool  `json:"pong"`
	List []any `json:"list"`
}

// Admin is py/server.py's AdminEndpoint: namespace admin, version 2.0.
//
//amqprpc:namespace admin
//amqprpc:version 2.0
type Admin interface {
	// Ping answers.
	Ping() Pong
}

// Machine is the Go implementation of Calc and Admin.
type Machine struct {
	name  string
	mu    sync.Mutex
	notes []string
}

// NewMachine returns a Machine that answers Name with name.
func NewMachine(name string) *Machine { return &Machine{name: name} }

func (*Machine) Add(v1, v2 int) int { return v1 + v2 }
func (*Machine) Mul(v1, v2 int) int { return v1 * v2 }

func (m *Machine) NotifyMe(text string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.notes = append(m.notes, text)
}

func (m *Machine) Notes() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string{}, m.notes...) // [], not null, before the first note
}

func (*Machine) SlowAdd(ctx context.Context, v1, v2 int, delay float64) (int, error) {
	select {
	case <-time.After(time.Duration(delay * float64(time.Second))):
		return v1 + v2, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (*Machine) Fail(why string) error {
	return runtime.Errorf(runtime.CodeFailedPrecondition, "%s: %w", why, ErrCalc)
}

func (*Machine) FailBuiltin() error {
	return runtime.Errorf(runtime.CodeInvalidArgument, "bad value 42")
}

func (*Machine) Whoami(ctx context.Context) (map[string]any, error) {
	return runtime.OsloContext(ctx), nil
}

func (m *Machine) Name() string { return m.name }

func (*Machine) Ping() Pong { return Pong{Pong: true, List: []any{1, 2.5, "x", nil}} }

// Exceptions maps ErrCalc to calcerrors.CalcError.
var Exceptions = []runtime.OsloException{{Module: "calcerrors", Class: "CalcError", Err: ErrCalc, Code: runtime.CodeFailedPrecondition}}
