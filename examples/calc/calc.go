// Package calc is the amqprpc example: a Calculator interface, the
// implementation its servers run, and the typed client and server adapter
// that amqprpc-gen generates from it (calc_amqprpc.go).
//
// Run a server and call it:
//
//	go run ./examples/calc/cmd/server &
//	go run ./examples/calc/cmd/client 2 3
package calc

import "os"

//go:generate go run github.com/amqprpc/amqprpc/cmd/amqprpc-gen -type=Calculator -output=calc_amqprpc.go

// Topic is the topic the example's servers serve and its clients call.
const Topic = "calc"

// Calculator does arithmetic for remote callers.
type Calculator interface {
	// Add returns the sum of v1 and v2.
	Add(v1, v2 int) int
}

// Adder is the Calculator that the example server runs.
type Adder struct{}

// Add returns v1 + v2.
func (Adder) Add(v1, v2 int) int { return v1 + v2 }

// BrokerURL returns the broker the example connects to: $AMQP_URL, or a
// RabbitMQ on this machine with its default account.
func BrokerURL() string {
	if url := os.Getenv("AMQP_URL"); url != "" {
		return url
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}
