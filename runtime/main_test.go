package runtime_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the tests if any goroutine outlives them: every client,
// server and connection they open must be closed.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
