package runtime

import (
	"sync"

	"github.com/amqprpc/amqprpc/internal/wire"
)

// DeclaredQueue is a queue as amqprpc declared it, for the tests of the
// topology.
type DeclaredQueue struct {
	Name                           string
	Durable, AutoDelete, Exclusive bool
	Args                           map[string]any
	// Mirrors says the queue is declared as another system's peers
	// (oslo.messaging's) declare it, with the settings the user gave.
	Mirrors bool
}

var (
	declaredMu sync.Mutex
	declared   []DeclaredQueue
)

func init() {
	declaredQueue = func(q wire.Queue) {
		declaredMu.Lock()
		defer declaredMu.Unlock()
		declared = append(declared, DeclaredQueue{q.Name, q.Durable, q.AutoDelete, q.Exclusive, q.Args, q.Mirrors})
	}
}

// DeclaredQueues returns every queue amqprpc declared in this test binary
// so far.
func DeclaredQueues() []DeclaredQueue {
	declaredMu.Lock()
	defer declaredMu.Unlock()
	return append([]DeclaredQueue(nil), declared...)
}
