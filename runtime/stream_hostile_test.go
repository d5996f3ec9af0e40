package runtime_test

import (
	"context"
	"errors"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqprpc/amqprpc/internal/wire"
	"github.com/amqprpc/amqprpc/runtime"
)

// A server amqprpc did not write sends a stream's caller what no server of
// amqprpc's would: the caller's loop ends with an error, at once, never
// with a short listing, a hang or a crash.
func TestStreamHostileServer(t *testing.T) {
	type message struct {
		typ  string
		seq  int64
		body string
	}
	items := func(seq int64, body string) message { return message{wire.ItemsType, seq, body} }
	end := func(seq int64, body string) message { return message{wire.EndType, seq, body} }
	cases := []struct {
		name     string
		messages []message
		items    int   // read before the error
		want     error // errors.Is
	}{
		{"a gap", []message{items(0, "[0,1]"), items(3, "[3]")}, 2, runtime.ErrStreamBroken},
		{"items twice", []message{items(0, "[0,1]"), items(0, "[0,1]")}, 2, runtime.ErrStreamBroken},
		{"beyond its credit", []message{items(0, "[0,1,2,3,4,5,6,7,8,9]")}, 0, runtime.ErrStreamBroken},
		{"an end that miscounts", []message{items(0, "[0,1]"), end(5, `{"result":null}`)}, 2, runtime.ErrStreamBroken},
		{"an end before its items", []message{end(0, `{"result":null}`), items(0, "[0]")}, 0, nil},
		{"items not an array", []message{items(0, `{"a":1}`)}, 0, runtime.ErrMalformedReply},
		{"an item of another type", []message{items(0, `["seven"]`)}, 0, runtime.ErrMalformedReply},
		{"not JSON", []message{items(0, `[0,`)}, 0, runtime.ErrMalformedReply},
		{"one reply, not a stream", []message{{wire.ReplyType, 0, `{"result":5}`}}, 0, runtime.ErrStreamBroken},
		{"nothing at all", nil, 0, context.DeadlineExceeded}, // no server took it, as far as the caller knows: at the client's timeout and a silence
	}
	topic := newTopic(t)
	c := dial(t, runtime.WithStreamWindow(4), runtime.WithTimeout(time.Second), runtime.WithStreamSilence(2*time.Second))
	ch := rawChannel(t)
	if _, err := ch.QueueDeclare(topic, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(topic, topic, runtime.DefaultExchange, false, nil); err != nil {
		t.Fatal(err)
	}
	deliveries, err := ch.Consume(topic, "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			got := make(chan error, 1)
			n := 0
			go func() {
				var last error
				for _, err := range count(ctx, c, topic, i, "") {
					if err != nil {
						last = err
						break
					}
					n++
				}
				got <- last
			}()
			var d amqp.Delivery
			select {
			case d = <-deliveries:
			case <-ctx.Done():
				t.Fatal("no request came")
			}
			if w, _ := wire.Integer(d.Headers[wire.StreamHeader]); w != 4 {
				t.Fatalf("the request asked for a window of %v, not 4", d.Headers[wire.StreamHeader])
			}
			for _, m := range tc.messages {
				pub := amqp.Publishing{Type: m.typ, CorrelationId: d.CorrelationId, Body: []byte(m.body),
					Headers: amqp.Table{wire.SeqHeader: m.seq, wire.CreditToHeader: "nowhere"}}
				if err := ch.PublishWithContext(ctx, "", d.ReplyTo, false, false, pub); err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			var err error
			select {
			case err = <-got:
			case <-time.After(4 * time.Second):
				t.Fatal("the caller's loop did not end")
			}
			if n != tc.items || tc.want != nil && !errors.Is(err, tc.want) || tc.want == nil && err != nil {
				t.Fatalf("read %d items (want %d), then %v (want %v)", n, tc.items, err, tc.want)
			}
			t.Logf("%d items, then, after %v: %v", n, time.Since(start).Round(time.Millisecond), err)
		})
	}
}
