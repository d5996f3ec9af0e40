package testsvc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/amqprpc/amqprpc/runtime"
)

//go:generate go run github.com/amqprpc/amqprpc/cmd/amqprpc-gen -type=Fleet -output=fleet_amqprpc.go

// Fleet is served by several servers of one topic at once: it has a method
// for each call mode, a method added in a later version, and declared
// errors.
//
//amqprpc:version 1.2
//amqprpc:errors ErrDivideByZero *LimitError
type Fleet interface {
	// Name returns the name of the server that ran it.
	Name() string
	// Record adds v to the server's total.
	//
	//amqprpc:cast
	Record(v int) error
	// Note counts one execution of the cast numbered id.
	//
	//amqprpc:cast
	Note(id int) error
	// Reset sets every server's total to zero.
	//
	//amqprpc:fanout
	Reset() error
	// Total returns the server's total.
	//
	//amqprpc:gather
	Total(ctx context.Context) (int, error)
	// Divide returns q and r such that a = q*b + r.
	Divide(a, b int) (q, r int, err error)
	// Check fails with a *LimitError above 10 and with a not_found error
	// below 0.
	Check(n int) error
	// Newer came with version 1.2.
	//
	//amqprpc:since 1.2
	Newer() string
}

// LimitError is a typed error that crosses the wire with its fields.
type LimitError struct {
	Max int `json:"max"`
}

func (e *LimitError) Error() string { return fmt.Sprintf("over the limit of %d", e.Max) }

// FleetImpl implements Fleet for one named server.
type FleetImpl struct {
	name  string
	total atomic.Int64
	Calls atomic.Int64 // methods run

	mu    sync.Mutex
	notes map[int]int // executions of Note, by id
}

// NewFleet returns the Fleet of the server named name.
func NewFleet(name string) *FleetImpl { return &FleetImpl{name: name} }

// Sum returns the total recorded so far.
func (f *FleetImpl) Sum() int { return int(f.total.Load()) }

func (f *FleetImpl) Name() string {
	f.Calls.Add(1)
	return f.name
}

func (f *FleetImpl) Record(v int) error {
	f.Calls.Add(1)
	f.total.Add(int64(v))
	return nil
}

func (f *FleetImpl) Note(id int) error {
	f.Calls.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.notes == nil {
		f.notes = make(map[int]int)
	}
	f.notes[id]++
	return nil
}

// Notes returns how many times Note(id) ran on this server.
func (f *FleetImpl) Notes(id int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.notes[id]
}

func (f *FleetImpl) Reset() error {
	f.Calls.Add(1)
	f.total.Store(0)
	return nil
}

func (f *FleetImpl) Total(ctx context.Context) (int, error) {
	f.Calls.Add(1)
	if f.name == "broken" {
		return 0, errors.New("broken server")
	}
	return int(f.total.Load()), nil
}

func (f *FleetImpl) Divide(a, b int) (int, int, error) {
	f.Calls.Add(1)
	if b == 0 {
		return 0, 0, fmt.Errorf("divide %d: %w", a, ErrDivideByZero)
	}
	return a / b, a % b, nil
}

func (f *FleetImpl) Check(n int) error {
	f.Calls.Add(1)
	switch {
	case n > 10:
		return &LimitError{Max: 10}
	case n < 0:
		return runtime.Errorf(runtime.CodeNotFound, "no item %d", n)
	}
	return nil
}

func (f *FleetImpl) Newer() string {
	f.Calls.Add(1)
	return "newer"
}
