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
