package runtime_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqprpc/amqprpc/internal/testsvc"
	"github.com/amqprpc/amqprpc/internal/wire"
	"github.com/amqprpc/amqprpc/runtime"
)

// brokerURL is the RabbitMQ the integration tests run against.
func brokerURL() string {
	if url := os.Getenv("AMQP_URL"); url != "" {
		return url
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

// rawChannel opens a plain amqp091-go channel, as a client or a server
// written without amqprpc would, or as a test inspecting the broker.
func rawChannel(t *testing.T) *amqp.Channel {
	t.Helper()
	return rawChannelAt(t, brokerURL())
}

// rawChannelAt is rawChannel through url, which names the user to log in as.
func rawChannelAt(t *testing.T, url string) *amqp.Channel {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("no RabbitMQ at %s (run `make broker`): %v", url, err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// newTopic returns a topic no other test uses, and deletes its queue when
// the test ends.
func newTopic(t *testing.T) string {
	t.Helper()
	topic := "test." + strings.ReplaceAll(t.Name(), "/", ".") + "." + uuid.NewString()[:8]
	t.Cleanup(func() {
		conn, err := amqp.Dial(brokerURL())
		if err != nil {
			return
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			return
		}
		ch.QueueDelete(topic, false, false, false)
		ch.ExchangeDelete(wire.FanoutExchange(runtime.DefaultExchange, topic), false, false)
	})
	return topic
}

// dial returns a client that is closed when the test ends.
func dial(t *testing.T, opts ...runtime.ClientOption) *runtime.Client {
	t.Helper()
	c, err := runtime.Dial(brokerURL(), opts...)
	if err != nil {
		t.Fatalf("no RabbitMQ at %s (run `make broker`): %v", brokerURL(), err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// testServer is a running server of testsvc.Arith, testsvc.Store and
// testsvc.Fleet.
type testServer struct {
	*runtime.Server
	arith *testsvc.ArithImpl
	fleet *testsvc.FleetImpl
	logs  *syncBuffer
	err   chan error // Serve's result
}

// serve starts a server named "main" on topic; see serveAs.
func serve(t *testing.T, topic string, opts ...runtime.ServerOption) *testServer {
	t.Helper()
	return serveAs(t, topic, "main", opts...)
}

// serveAs starts a server named name on topic and waits until it consumes
// its queues. It is shut down when the test ends.
func serveAs(t *testing.T, topic, name string, opts ...runtime.ServerOption) *testServer {
	t.Helper()
	return serveVia(t, brokerURL(), topic, name, opts...)
}

// serveVia is serveAs through the broker at url.
func serveVia(t *testing.T, url, topic, name string, opts ...runtime.ServerOption) *testServer {
	t.Helper()
	ts := &testServer{arith: new(testsvc.ArithImpl), fleet: testsvc.NewFleet(name), logs: new(syncBuffer), err: make(chan error, 1)}
	logger := slog.New(slog.NewTextHandler(ts.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts = append([]runtime.ServerOption{runtime.WithLogger(logger), runtime.WithServerName(name)}, opts...)
	ts.Server = runtime.NewServer(url, topic, opts...)
	testsvc.RegisterArithServer(ts.Server, ts.arith)
	testsvc.RegisterStoreServer(ts.Server, new(testsvc.MapStore))
	testsvc.RegisterFleetServer(ts.Server, ts.fleet)
	go func() { ts.err <- ts.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ts.Shutdown(ctx)
	})
	waitServing(t, topic, name)
	return ts
}

// waitServing waits until the server named name consumes its queues: until
// a call sent to it alone gets an answer, even an error, rather than
// ErrNoServer. Its fanout queue is bound by then too.
func waitServing(t *testing.T, topic, name string) {
	t.Helper()
	c := dial(t)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Invoke(ctx, runtime.Request{Target: runtime.Target{Topic: topic, Server: name}, Method: "no_such_method", Args: struct{}{}}, nil)
		cancel()
		if _, ok := errors.AsType[*runtime.Error](err); ok {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("server %s did not answer on topic %s", name, topic)
}

// syncBuffer is a bytes.Buffer for a logger written from many goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// remoteCode returns the code of the *runtime.Error in err, or "" if none.
func remoteCode(err error) runtime.Code {
	if rerr, ok := errors.AsType[*runtime.Error](err); ok {
		return rerr.Code
	}
	return ""
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// invoke calls method on topic with args as a generated client would, but
// with arguments of any shape.
func invoke(ctx context.Context, c runtime.Invoker, topic, method string, args, reply any) error {
	return c.Invoke(ctx, runtime.Request{Target: runtime.Target{Topic: topic}, Method: method, Args: args}, reply)
}
