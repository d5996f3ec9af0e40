// Package calc is the amqprpc example: a Calculator interface, the
// implementation its servers run, and the typed client and server adapter
// that amqprpc-gen generates from it (calc_amqprpc.go). Its methods show
// every call mode: calls (Add, Div), a cast (Store), a fanout (Clear), a
// gather (Memory), with a version and a declared error.
//
// Run two servers and call them:
//
//	go run ./examples/calc/cmd/server -name a &
//	go run ./examples/calc/cmd/server -name b &
//	go run ./examples/calc/cmd/client 2 3
//	go run ./examples/calc/cmd/client div 1 0
//	go run ./examples/calc/cmd/client -server a store 5
//	go run ./examples/calc/cmd/client memory
package calc

import (
	"errors"
	"os"
	"sync/atomic"
)

//go:generate go run github.com/amqprpc/amqprpc/cmd/amqprpc-gen -type=Calculator -output=calc_amqprpc.go -description=calc_amqprpc.json -asyncapi=calc_amqprpc.asyncapi.json

// Topic is the topic the example's servers serve and its clients call.
const Topic = "calc"

// ErrDivideByZero is Div's error for a zero divisor. It is declared below
// with //amqprpc:errors, so clients can match it with errors.Is.
var ErrDivideByZero = errors.New("divide by zero")

// Calculator does arithmetic for remote callers, and each of its servers
// keeps a memory.
//
//amqprpc:version 1.1
//amqprpc:errors ErrDivideByZero
type Calculator interface {
	// Add returns the sum of v1 and v2.
	Add(v1, v2 int) int
	// Div returns a / b, or ErrDivideByZero when b is 0.
	//
	//amqprpc:since 1.1
	Div(a, b int) (int, error)
	// Store adds v to the memory of the server that takes it. The client
	// waits for the broker to take the request, not for the server.
	//
	//amqprpc:cast
	Store(v int)
	// Clear sets the memory of every server to zero.
	//
	//amqprpc:fanout
	Clear()
	// Memory returns the server's memory; GatherMemory asks every server.
	//
	//amqprpc:gather
	Memory() int
}

// Machine is the Calculator that the example server runs.
type Machine struct {
	memory atomic.Int64
}

// Add returns v1 + v2.
func (*Machine) Add(v1, v2 int) int { return v1 + v2 }

// Div returns a / b.
func (*Machine) Div(a, b int) (int, error) {
	if b == 0 {
		return 0, ErrDivideByZero
	}
	return a / b, nil
}

// Store adds v to the memory.
func (m *Machine) Store(v int) { m.memory.Add(int64(v)) }

// Clear sets the memory to zero.
func (m *Machine) Clear() { m.memory.Store(0) }

// Memory returns the memory.
func (m *Machine) Memory() int { return int(m.memory.Load()) }

// BrokerURL returns the broker the example connects to: $AMQP_URL, or a
// RabbitMQ on this machine with its default account.
func BrokerURL() string {
	if url := os.Getenv("AMQP_URL"); url != "" {
		return url
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}
