package runtime_test

import (
	"flag"
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/amqprpc/amqprpc/runtime"
)

// TestMain fails the tests if any goroutine outlives them: every client,
// server and connection they open must be closed. It also fails them if
// amqprpc declared, anywhere in the suite, a queue that RabbitMQ 4.3 would
// refuse with its default settings.
func TestMain(m *testing.M) {
	if topic := os.Getenv("AMQPRPC_STREAM_SERVE"); topic != "" { // a server process to kill (TestStreamServerKilled)
		serveCounterProcess(topic)
		return
	}
	code := m.Run()
	// A run of some tests (-run, -fuzz) may declare none.
	if qs := runtime.DeclaredQueues(); code == 0 && (len(qs) > 0 || flag.Lookup("test.run").Value.String() == "" && flag.Lookup("test.fuzz").Value.String() == "") {
		if err := checkDeclaredQueues(qs); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL: the topology:", err)
			code = 1
		}
	}
	if code == 0 {
		goleak.VerifyTestMain(noRun{})
		return
	}
	os.Exit(code)
}

// noRun lets goleak.VerifyTestMain check for leaks after m.Run has run.
type noRun struct{}

func (noRun) Run() int { return 0 }

// deniedArgs are the queue arguments RabbitMQ 4.3 denies by default, with
// the value it denies (nil for any).
var deniedArgs = map[string]any{
	"x-queue-mode":    nil,      // lazy queues: deprecated, denied
	"x-queue-version": int64(1), // classic queue storage v1: removed
	"x-ha-policy":     nil,      // classic mirrored queues: removed in 4.0
}

// checkDeclaredQueues returns why one of qs would not be declared on
// RabbitMQ 4.3 with its default settings: a queue neither durable nor
// exclusive (deprecated feature transient_nonexcl_queues), or an argument
// it denies.
func checkDeclaredQueues(qs []runtime.DeclaredQueue) error {
	if len(qs) == 0 {
		return fmt.Errorf("no queue was declared: the check saw nothing")
	}
	for _, q := range qs {
		if q.Mirrors { // declared as another system's peers declare it, with the user's settings
			continue
		}
		if !q.Durable && !q.Exclusive {
			return fmt.Errorf("queue %q is neither durable nor exclusive", q.Name)
		}
		for k, v := range q.Args {
			if denied, ok := deniedArgs[k]; ok && (denied == nil || fmt.Sprint(denied) == fmt.Sprint(v)) {
				return fmt.Errorf("queue %q has argument %s=%v", q.Name, k, v)
			}
		}
	}
	return nil
}
