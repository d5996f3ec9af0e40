package runtime_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"

	"github.com/amqprpc/amqprpc/internal/testsvc"
	"github.com/amqprpc/amqprpc/internal/wire"
	"github.com/amqprpc/amqprpc/runtime"
)

// Tests of defects that a review of the code found: each failed before its
// fix.

// TestGatherAfterTheBrokerForgotItsFanoutExchange: a broker that restarts
// forgets the transient fanout exchanges; a client that reconnects to it
// declares them again before it publishes there, so that a gather does not
// close the calls channel, and with it fail every call in flight.
func TestGatherAfterTheBrokerForgotItsFanoutExchange(t *testing.T) {
	topic := newTopic(t)
	srv := serve(t, topic)
	p, url := proxy(t)
	c := dialURL(t, url)
	gather := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		return c.InvokeAll(ctx, runtime.Request{Target: runtime.Target{Topic: topic}, Method: "add", Args: struct{}{}}, 0, func(string, func(any) error) {})
	}
	if err := gather(); err != nil {
		t.Fatal(err)
	}
	// What a broker restart does to the client: its connection goes, and
	// so does the exchange.
	if err := rawChannel(t).ExchangeDelete(wire.FanoutExchange(runtime.DefaultExchange, topic), false, false); err != nil {
		t.Fatal(err)
	}
	p.Cut()
	arith := testsvc.NewArithClient(c, topic)
	eventually(t, "the client reconnects", func() bool {
		_, err := arith.Add(ctxTimeout(t, time.Second), 1, 1)
		return err == nil
	})
	inFlight := sleepInFlight(t, srv, arith, 500*time.Millisecond)
	// No server is bound to the exchange the broker forgot, until the
	// server reconnects too.
	if err := gather(); !errors.Is(err, runtime.ErrNoServer) {
		t.Fatalf("gather after the exchange was forgotten: %v; want ErrNoServer", err)
	}
	if err := <-inFlight; err != nil {
		t.Fatalf("a call in flight during the gather: %v", err)
	}
}

// TestShutdownWaitsForHandlersAfterALostConnection: Shutdown returns once
// the handlers in flight have returned, also those of a connection lost
// just before.
func TestShutdownWaitsForHandlersAfterALostConnection(t *testing.T) {
	topic := newTopic(t)
	p, url := proxy(t)
	srv := serveVia(t, url, topic, "main", fastReconnect)
	arith := testsvc.NewArithClient(dial(t), topic)
	go arith.Work(ctxTimeout(t, 10*time.Second), 3, 500*time.Millisecond)
	eventually(t, "Work runs", func() bool { return srv.arith.Calls.Load() == 1 })
	p.Refuse(true)
	p.Cut()
	eventually(t, "the server sees the loss", func() bool { return strings.Contains(srv.logs.String(), "connection to the broker lost") })
	if err := srv.Shutdown(ctxTimeout(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if runs := srv.arith.Executions(3); runs != 1 {
		t.Fatalf("Shutdown returned while Work still ran (%d runs ended)", runs)
	}
}

// TestFailedServeLeaksNothing: a server that cannot serve returns the
// error, here that the topic's queue exists with other settings than its
// options make, and leaves no goroutine behind.
func TestFailedServeLeaksNothing(t *testing.T) {
	topic := newTopic(t)
	if _, err := rawChannel(t).QueueDeclare(topic, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		t.Fatal(err)
	}
	before := goleak.IgnoreCurrent()
	srv := runtime.NewServer(brokerURL(), topic, runtime.WithServerName("main"))
	testsvc.RegisterArithServer(srv, new(testsvc.ArithImpl))
	err := srv.Serve()
	if !errors.Is(err, runtime.ErrTopologyMismatch) || !strings.Contains(err.Error(), "x-queue-type") || !strings.Contains(err.Error(), "WithQueueType") {
		t.Fatalf("Serve = %v; want ErrTopologyMismatch that names x-queue-type and the option that sets it", err)
	}
	t.Log(err)
	goleak.VerifyNone(t, before)
}

// TestCloseDuringReconnectionLeaksNothing: a client closed while it
// reconnects leaves no goroutine behind, whichever step the reconnection
// was at.
func TestCloseDuringReconnectionLeaksNothing(t *testing.T) {
	p, url := proxy(t)
	before := goleak.IgnoreCurrent()
	for i := range 20 {
		c, err := runtime.Dial(url, runtime.WithReconnectBackoff(time.Millisecond, time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		p.Cut()
		time.Sleep(time.Duration(i%5) * time.Millisecond)
		c.Close()
	}
	goleak.VerifyNone(t, before)
}

// TestWithoutAckAfterReplyTheServerHoldsItsPrefetch: a server that does
// not acknowledge after replying still takes from the broker only what its
// prefetch count allows; the rest waits in the queue, not in the server's
// memory.
func TestWithoutAckAfterReplyTheServerHoldsItsPrefetch(t *testing.T) {
	topic := newTopic(t)
	serve(t, topic, runtime.WithAckAfterReply(false), runtime.WithPrefetch(4))
	ch := rawChannel(t)
	const n = 100
	for range n {
		publish(t, ch, topic, amqp.Publishing{Body: []byte(`{"method": "sleep", "args": {"d": 50000000}}`)})
	}
	time.Sleep(300 * time.Millisecond)
	q, err := ch.QueueDeclarePassive(topic, false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	// In 300 ms, 4 at a time, a server runs about 24 of them and holds 4
	// more; one that took what it was sent, unbounded, would hold all.
	if q.Messages < n/2 {
		t.Fatalf("%d of %d requests wait in the queue; the server took more than its prefetch count of 4 allows", q.Messages, n)
	}
	ch.QueuePurge(topic, false)
}

// panicky is a result whose encoding panics.
type panicky struct{}

func (panicky) MarshalJSON() ([]byte, error) { panic("panicky: MarshalJSON") }

// panickyError is a declared error whose detail's encoding panics.
type panickyError struct{}

func (panickyError) Error() string                { return "panicky error" }
func (panickyError) MarshalJSON() ([]byte, error) { panic("panickyError: MarshalJSON") }

// TestPanicsWhileEncodingAReply: a result or a declared error whose
// encoding panics fails its call with CodeInternal; the server goes on.
func TestPanicsWhileEncodingAReply(t *testing.T) {
	desc := &runtime.ServiceDesc{
		ServiceName: "Panicky",
		Methods: []runtime.MethodDesc{
			{Name: "result", Handler: func(any, context.Context, func(any) error) (any, error) { return panicky{}, nil }},
			{Name: "error", Handler: func(any, context.Context, func(any) error) (any, error) { return nil, panickyError{} }},
		},
		Errors: []runtime.ErrorDesc{runtime.TypedError[panickyError]("runtime_test.panickyError")},
	}
	topic := newTopic(t)
	srv := runtime.NewServer(brokerURL(), topic, runtime.WithServerName("panicky"))
	srv.RegisterService(desc, struct{}{})
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	t.Cleanup(func() {
		srv.Shutdown(context.Background())
		<-served
	})
	waitServing(t, topic, "panicky")
	c := dial(t)
	for range 2 {
		for _, method := range []string{"result", "error"} {
			err := c.Invoke(ctxTimeout(t, 5*time.Second), runtime.Request{Target: runtime.Target{Topic: topic}, Service: desc, Method: method, Args: struct{}{}}, new(any))
			if remoteCode(err) != runtime.CodeInternal {
				t.Fatalf("%s = %v; want code %s", method, err, runtime.CodeInternal)
			}
		}
	}
}
