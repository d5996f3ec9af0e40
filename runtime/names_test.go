package runtime_test

import (
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/amqprpc/amqprpc/internal/testsvc"
	"github.com/amqprpc/amqprpc/runtime"
)

// TestServerNameTaken: a server given a name that a running server of its
// topic answers to does not serve, and says why; one that keeps the
// default name (the host's) serves, and logs that it shares it; a topic
// named <topic>.<name> does not take the name; the name of a server that
// has shut down is free again.
func TestServerNameTaken(t *testing.T) {
	topic := newTopic(t)
	first := serveAs(t, topic, "twin")

	second := runtime.NewServer(brokerURL(), topic, runtime.WithServerName("twin"), runtime.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	testsvc.RegisterArithServer(second, new(testsvc.ArithImpl))
	served := make(chan error, 1)
	go func() { served <- second.Serve() }()
	select {
	case err := <-served:
		if !errors.Is(err, runtime.ErrServerNameTaken) || !strings.Contains(err.Error(), `"twin"`) {
			t.Fatalf("Serve with a name taken: %v; want ErrServerNameTaken naming it", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve with a name taken still serves after 10s")
	}

	logs := new(syncBuffer)
	host := runtime.NewServer(brokerURL(), topic, runtime.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	other := runtime.NewServer(brokerURL(), topic, runtime.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	for _, srv := range []*runtime.Server{other, host} { // both named after the host
		testsvc.RegisterArithServer(srv, new(testsvc.ArithImpl))
		go srv.Serve()
		t.Cleanup(func() { srv.Shutdown(ctxTimeout(t, 5*time.Second)) })
		waitServing(t, topic, srv.Name())
	}
	// waitServing is answered by the first of the two: the second's log
	// line may come after.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && !strings.Contains(logs.String(), "another server of this name"); {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "another server of this name") {
		t.Errorf("a server sharing the host's name with another did not log it; logs:\n%s", logs)
	}

	// <topic>.<name> is also the key of the topic named so: its servers
	// answer, but not as a server of this topic and name.
	serveAs(t, topic+".other", "x")
	collider := runtime.NewServer(brokerURL(), topic, runtime.WithServerName("other"), runtime.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	testsvc.RegisterArithServer(collider, new(testsvc.ArithImpl))
	otherServed := make(chan error, 1)
	go func() { otherServed <- collider.Serve() }()
	select {
	case err := <-otherServed:
		t.Fatalf("a server named other on %s, beside the topic %s.other: Serve = %v", topic, topic, err)
	case <-time.After(time.Second): // serving
	}
	collider.Shutdown(ctxTimeout(t, 5*time.Second))

	if err := first.Shutdown(ctxTimeout(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	serveAs(t, topic, "twin") // fails the test unless it serves
}
