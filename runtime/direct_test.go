package runtime

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqprpc/amqprpc/internal/amqpio/amqpfake"
)

// TestDirectRepliesGoOutManyAtOnce: replies to direct reply-to addresses
// of a node the broker took a reply to go out while the confirms of the
// others are awaited (here with reply confirms, on the session's channel),
// not one confirmed round trip at a time; the first, to a node not yet
// known, goes alone on the server's connection for them.
func TestDirectRepliesGoOutManyAtOnce(t *testing.T) {
	b := amqpfake.New()
	s := NewServer("amqp://fake/", "direct", WithServerName("s"), WithReplyConfirms(true), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	s.connect, s.direct.connect = b.Connect, b.Connect
	s.RegisterService(benchDesc, struct{}{})
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	defer func() {
		s.Shutdown(context.Background())
		<-served
	}()
	if !eventually(2*time.Second, func() bool { return b.Consumers("direct") > 0 }) {
		t.Fatal("the server does not consume")
	}
	call := func(id int) {
		b.Publish(DefaultExchange, "direct", amqp.Publishing{CorrelationId: fmt.Sprint(id), ReplyTo: modelDirect, Body: []byte(`{"method":"add","args":{"v1":1,"v2":2}}`)})
	}
	replies := func() int { return len(b.Record().Replies) }
	call(0) // a node not known yet: alone, and learned
	if !eventually(2*time.Second, func() bool { return replies() == 1 }) {
		t.Fatal("no reply to the first call")
	}
	b.HoldConfirms(true)
	defer func() { // before the server shuts down, on failure
		b.HoldConfirms(false)
		b.ReleaseConfirms()
	}()
	const n = 8
	for i := range n {
		call(1 + i)
	}
	if !eventually(2*time.Second, func() bool { return replies() == 1+n }) {
		t.Fatalf("%d of %d replies published while the broker held their confirms; want every one", replies()-1, n)
	}
	if held := b.ReleaseConfirms(); held != n {
		t.Errorf("%d confirms held; want %d", held, n)
	}
	if !eventually(2*time.Second, func() bool { return b.Idle("direct") }) {
		t.Fatal("the requests were not acknowledged once their replies were confirmed")
	}
}

// directServer serves benchDesc on topic "direct" of b, with opts.
func directServer(t *testing.T, b *amqpfake.Broker, opts ...ServerOption) *Server {
	t.Helper()
	s := NewServer("amqp://fake/", "direct", append([]ServerOption{WithServerName("s"), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		WithReconnectBackoff(50*time.Millisecond, time.Second)}, opts...)...)
	s.connect, s.direct.connect = b.Connect, b.Connect
	s.RegisterService(benchDesc, struct{}{})
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	t.Cleanup(func() {
		s.Shutdown(context.Background())
		<-served
	})
	if !eventually(2*time.Second, func() bool { return b.Consumers("direct") > 0 }) {
		t.Fatal("the server does not consume")
	}
	return s
}

// TestDirectRepliesWhileTheirConnectionCannotBeHad: replies to a node not
// yet known wait for the server's connection for them, and their turn,
// only until their caller's deadline; then they are dropped, counted
// Undelivered, and their requests acknowledged: they ran once.
func TestDirectRepliesWhileTheirConnectionCannotBeHad(t *testing.T) {
	b := amqpfake.New()
	s := directServer(t, b)
	b.Down(true)
	const n = 5
	due := time.Now().Add(300 * time.Millisecond)
	for i := range n {
		b.Publish(DefaultExchange, "direct", amqp.Publishing{CorrelationId: fmt.Sprint(i), ReplyTo: modelDirect,
			Headers: amqp.Table{"amqprpc-deadline": due.UnixMilli()}, Body: []byte(`{"method":"add","args":{"v1":1,"v2":2}}`)})
	}
	if !eventually(3*time.Second, func() bool { return b.Idle("direct") }) {
		t.Fatalf("requests still unacknowledged 3s after their deadline; stats %+v", s.Stats())
	}
	if st := s.Stats(); st.Undelivered != n || len(b.Record().Replies) != 0 {
		t.Fatalf("stats %+v, %d replies; want %d undelivered, none published", st, len(b.Record().Replies), n)
	}
}

// TestDirectRepliesToARefusedNode: of the requests whose replies go to a
// node the broker refuses, the first costs the server's connection for
// them; the others, waiting their turn, are refused without one.
func TestDirectRepliesToARefusedNode(t *testing.T) {
	b := amqpfake.New()
	s := directServer(t, b)
	b.Refuse(modelRefused)
	before := b.Connections()
	const n = 5
	for i := range n {
		b.Publish(DefaultExchange, "direct", amqp.Publishing{CorrelationId: fmt.Sprint(i), ReplyTo: modelRefused, Body: []byte(`{"method":"add","args":{"v1":1,"v2":2}}`)})
	}
	if !eventually(3*time.Second, func() bool { return b.Idle("direct") }) {
		t.Fatal("requests still unacknowledged")
	}
	if conns := b.Connections() - before; conns > 2 {
		t.Errorf("%d connections for the replies to a refused node; want the first's, and one more at most", conns)
	}
	if st := s.Stats(); st.Unanswerable != n {
		t.Errorf("stats %+v; want %d unanswerable", st, n)
	}
}

// TestDirectReplyRefusedOnItsChannel: a reply to a node not yet known that
// the broker refuses on its channel (a channel error, as for a reply too
// large) is one it refused, as a nacked reply is: not published again and
// again, on a new connection each time, until its deadline.
func TestDirectReplyRefusedOnItsChannel(t *testing.T) {
	b := amqpfake.New()
	s := directServer(t, b, WithAckAfterReply(false))
	for range 200 {
		b.FailNext("publish")
	}
	before := b.Connections()
	b.Publish(DefaultExchange, "direct", amqp.Publishing{CorrelationId: "1", ReplyTo: modelDirect, Body: []byte(`{"method":"add","args":{"v1":1,"v2":2}}`)})
	if !eventually(2*time.Second, func() bool { return b.Idle("direct") }) {
		t.Fatal("the request was not acknowledged")
	}
	time.Sleep(100 * time.Millisecond) // what a loop would dial meanwhile
	if conns := b.Connections() - before; conns != 1 {
		t.Fatalf("%d connections for one reply the broker refused; want 1 (stats %+v)", conns, s.Stats())
	}
}

// TestDirectProbeGivenUpClosesItsConnection: a reply to a node not yet
// known that gives up before the broker confirms it closes the server's
// connection for them: the broker's answer to it, if it closes that
// connection, must not be taken for the next reply's.
func TestDirectProbeGivenUpClosesItsConnection(t *testing.T) {
	b := amqpfake.New()
	s := directServer(t, b)
	b.HoldConfirms(true)
	b.Publish(DefaultExchange, "direct", amqp.Publishing{CorrelationId: "1", ReplyTo: modelDirect,
		Headers: amqp.Table{"amqprpc-deadline": time.Now().Add(200 * time.Millisecond).UnixMilli()}, Body: []byte(`{"method":"add","args":{"v1":1,"v2":2}}`)})
	if !eventually(2*time.Second, func() bool { return s.Stats().Undelivered == 1 }) {
		t.Fatalf("stats %+v; want the reply given up at its deadline", s.Stats())
	}
	b.HoldConfirms(false)
	b.ReleaseConfirms()
	before := b.Connections()
	b.Publish(DefaultExchange, "direct", amqp.Publishing{CorrelationId: "2", ReplyTo: modelDirect, Body: []byte(`{"method":"add","args":{"v1":1,"v2":2}}`)})
	if !eventually(2*time.Second, func() bool { return len(b.Record().Replies) == 2 }) {
		t.Fatal("no reply to the second request")
	}
	if conns := b.Connections() - before; conns != 1 {
		t.Fatalf("the next reply went on %d new connections; want 1, the one before given up with its unconfirmed reply", conns)
	}
}

// TestDirectNodeThatLeft: a reply to a node the broker took replies to,
// once it no longer knows the node (it left the cluster), costs the
// session's connection once: the server then forgets the nodes it knew,
// and the request, delivered again, is refused on the server's connection
// for them rather than close the session's again (and be quarantined).
func TestDirectNodeThatLeft(t *testing.T) {
	b := amqpfake.New()
	s := directServer(t, b, WithAckAfterReply(true))
	call := func(id string) {
		b.Publish(DefaultExchange, "direct", amqp.Publishing{CorrelationId: id, ReplyTo: modelDirect, Body: []byte(`{"method":"add","args":{"v1":1,"v2":2}}`)})
	}
	call("1")
	if !eventually(2*time.Second, func() bool { return b.Idle("direct") && s.direct.known(modelDirect) }) {
		t.Fatal("the node was not learned")
	}
	b.Refuse(modelDirect)
	call("2")
	if !eventually(3*time.Second, func() bool { return b.Idle("direct") }) {
		t.Fatalf("the request was not settled; stats %+v", s.Stats())
	}
	if st := s.Stats(); st.Reconnects != 1 || st.Unanswerable != 1 || st.Quarantined != 0 {
		t.Fatalf("stats %+v; want one reconnection, then the request refused unanswered", st)
	}
}
