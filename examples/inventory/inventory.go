// Package inventory is the amqprpc example of a stream: an Inventory
// whose List sends the items on a store's shelves as it finds them, and
// whose Count is a call, with a declared error that ends a stream as it
// fails a call. inventory_amqprpc.go is what amqprpc-gen generates from it.
//
// Run a server and ask it:
//
//	go run ./examples/inventory/cmd/server &
//	go run ./examples/inventory/cmd/client list -shelf A
//	go run ./examples/inventory/cmd/client list -shelf A -limit 5
//	go run ./examples/inventory/cmd/client count -shelf B -min 50
//	go run ./examples/inventory/cmd/client list -shelf Z
package inventory

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"os"
)

//go:generate go run github.com/amqprpc/amqprpc/cmd/amqprpc-gen -type=Inventory -output=inventory_amqprpc.go -description=inventory_amqprpc.json -asyncapi=inventory_amqprpc.asyncapi.json

// Topic is the topic the example's server serves and its client calls.
const Topic = "inventory"

// ErrNoShelf is the error of a filter that names a shelf the store does
// not have. It is declared below with //amqprpc:errors, so clients can
// match it with errors.Is, whether a call returns it or a stream ends
// with it.
var ErrNoShelf = errors.New("no such shelf")

// Filter says which items to send or count.
type Filter struct {
	// Shelf is the shelf to look on, "" for every shelf.
	Shelf string `json:"shelf,omitempty"`
	// MinQty leaves out the items of which there are fewer.
	MinQty int `json:"min_qty,omitempty"`
}

// Item is one kind of thing on a shelf, and how many of it there are.
type Item struct {
	SKU   string `json:"sku"`
	Shelf string `json:"shelf"`
	Name  string `json:"name"`
	Qty   int    `json:"qty"`
}

// Inventory tells remote callers what is on the shelves of a store.
//
//amqprpc:errors ErrNoShelf
type Inventory interface {
	// List sends every item on the shelves that match f, as it finds them.
	List(ctx context.Context, f Filter) iter.Seq2[Item, error]
	// Count returns how many items match f.
	Count(ctx context.Context, f Filter) (int, error)
}

// Shelves are the shelves of a Store, in the order List visits them.
var Shelves = []string{"A", "B", "C", "D"}

// Store is the Inventory that the example server runs: made-up items on
// shelves A to D, in memory.
type Store struct {
	shelves map[string][]Item
}

// NewStore returns a Store with perShelf items on each shelf. Their names
// and quantities are made up, the same each time.
func NewStore(perShelf int) *Store {
	kinds := []string{"bolt", "nut", "washer", "screw", "hinge", "bracket", "spring"}
	s := &Store{shelves: make(map[string][]Item, len(Shelves))}
	for n, shelf := range Shelves {
		items := make([]Item, perShelf)
		for i := range items {
			items[i] = Item{
				SKU:   fmt.Sprintf("%s-%04d", shelf, i+1),
				Shelf: shelf,
				Name:  fmt.Sprintf("%s M%d", kinds[i%len(kinds)], 2+i%10),
				Qty:   (i*37 + n*11) % 100,
			}
		}
		s.shelves[shelf] = items
	}
	return s
}

// List yields the items that match f, shelf by shelf, as the caller asks
// for them, and stops when the caller does or ctx ends (the caller gave
// up, or went away). A shelf it does not have ends the stream with
// ErrNoShelf.
func (s *Store) List(ctx context.Context, f Filter) iter.Seq2[Item, error] {
	return func(yield func(Item, error) bool) {
		shelves := Shelves
		if f.Shelf != "" {
			if _, ok := s.shelves[f.Shelf]; !ok {
				yield(Item{}, fmt.Errorf("shelf %q: %w", f.Shelf, ErrNoShelf))
				return
			}
			shelves = []string{f.Shelf}
		}
		for _, shelf := range shelves {
			for _, it := range s.shelves[shelf] {
				if err := ctx.Err(); err != nil {
					yield(Item{}, err)
					return
				}
				if it.Qty >= f.MinQty && !yield(it, nil) {
					return
				}
			}
		}
	}
}

// Count counts what List yields.
func (s *Store) Count(ctx context.Context, f Filter) (int, error) {
	n := 0
	for _, err := range s.List(ctx, f) {
		if err != nil {
			return 0, err
		}
		n++
	}
	return n, nil
}

// BrokerURL returns the broker the example connects to: $AMQP_URL, or a
// RabbitMQ on this machine with its default account.
func BrokerURL() string {
	if url := os.Getenv("AMQP_URL"); url != "" {
		return url
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}
