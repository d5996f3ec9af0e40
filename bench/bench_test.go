package main

import (
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary act as the benchmark's server and client
// processes, which the driver starts as os.Args[0] serve|client ....
func TestMain(m *testing.M) {
	if !subcommand() {
		os.Exit(m.Run())
	}
}

// TestSmoke runs the driver briefly: every implementation must make calls
// without errors, and the report must have its table and ratios.
func TestSmoke(t *testing.T) {
	report, err := run(config{reps: 1, duration: 300 * time.Millisecond, warmup: 200 * time.Millisecond, quick: true}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| amqprpc |", "| amqprpc-quorum |", "| baseline |", "| floor |", "throughput at 64 in flight", "sequential p50 latency", "sequential p99 latency", "## oslo.messaging", "## Interceptors and OpenTelemetry", "## A plain client's reply path", "| plain-direct |", "| plain-queue |", "| plain-direct/plain-queue |", "## Streams", "| one stream of 300000 items |"} {
		if !strings.Contains(report, want) {
			t.Errorf("the report has no %q:\n%s", want, report)
		}
	}
	if strings.Contains(report, "| 0 |") {
		t.Errorf("an implementation made no calls:\n%s", report)
	}
}
