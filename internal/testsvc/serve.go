package testsvc

import (
	"context"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqprpc/amqprpc/internal/wire"
	"github.com/amqprpc/amqprpc/runtime"
)

// Serve runs s until the test ends: Serve in a goroutine of its own, then,
// at the test's cleanup, Shutdown (5 s) and the wait for Serve to return.
// With a broker url, the topic's queue and fanout exchange, which outlive
// their servers, are deleted after it.
func Serve(t testing.TB, s *runtime.Server, url, topic string) {
	t.Helper()
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		<-served
		if url != "" {
			DeleteTopic(url, topic)
		}
	})
}

// DeleteTopic deletes the queue and the fanout exchange of topic, with
// amqprpc's default exchange, at the broker url; it ignores failures.
func DeleteTopic(url, topic string) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return
	}
	defer conn.Close()
	if ch, err := conn.Channel(); err == nil {
		ch.QueueDelete(topic, false, false, false)
		ch.ExchangeDelete(wire.FanoutExchange(runtime.DefaultExchange, topic), false, false)
	}
}
