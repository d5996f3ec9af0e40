package wire

import (
	"encoding/json"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

func TestStreamMessages(t *testing.T) {
	p := Amqprpc(AmqprpcTopology{Exchange: "x"})
	var req amqp.Publishing
	if err := p.EncodeRequest(&req, &Out{MsgID: "id", Method: "list", ReplyTo: "q", Stream: 32, Meta: map[string]string{"k": "v"}}); err != nil {
		t.Fatal(err)
	}
	var in In
	if err := p.DecodeRequest(&amqp.Delivery{CorrelationId: req.CorrelationId, ReplyTo: req.ReplyTo, Headers: req.Headers, Body: req.Body}, &in); err != nil {
		t.Fatal(err)
	}
	if in.Stream != 32 || in.Meta["k"] != "v" || len(in.Meta) != 1 {
		t.Fatalf("a stream's request read back as window %d, metadata %v", in.Stream, in.Meta)
	}
	for asked, window := range map[int64]int{0: 1, -5: 1, 1 << 40: maxWindow} {
		var in In
		p.DecodeRequest(&amqp.Delivery{Headers: amqp.Table{StreamHeader: asked}, Body: []byte(`{"method":"m"}`)}, &in)
		if in.Stream != window {
			t.Fatalf("a window of %d read as %d, not %d", asked, in.Stream, window)
		}
	}

	var items amqp.Publishing
	p.Streams.EncodeItems(&items, "id", "credits", 7, []json.RawMessage{json.RawMessage(`1`), json.RawMessage(`{"a":2}`)})
	var got []*Reply
	each := func(r *Reply) { got = append(got, r) }
	if err := p.SplitReplies(&amqp.Delivery{Type: items.Type, CorrelationId: items.CorrelationId, Headers: items.Headers, Body: items.Body}, each); err != nil {
		t.Fatal(err)
	}
	split, err := p.Streams.SplitItems(got[0])
	if got[0].Kind != Items || got[0].Seq != 7 || got[0].CreditTo != "credits" || got[0].ID != "id" || err != nil || len(split) != 2 || string(split[1]) != `{"a":2}` {
		t.Fatalf("items read back as %+v, %q, %v", got[0], split, err)
	}

	var end amqp.Publishing
	if err := p.Streams.EncodeEnd(&end, "id", "credits", 9, &Failure{Code: "aborted", Message: "no"}); err != nil {
		t.Fatal(err)
	}
	got = nil
	p.SplitReplies(&amqp.Delivery{Type: end.Type, CorrelationId: end.CorrelationId, Headers: end.Headers, Body: end.Body}, each)
	f, err := p.DecodeReply(got[0], nil)
	if got[0].Kind != End || got[0].Seq != 9 || err != nil || f == nil || f.Code != "aborted" {
		t.Fatalf("an end read back as %+v, %+v, %v", got[0], f, err)
	}

	var credit, cancel amqp.Publishing
	p.Streams.EncodeCredit(&credit, "id", 512)
	p.Streams.EncodeCancel(&cancel, "id")
	c, err := p.Streams.DecodeControl(&amqp.Delivery{Type: credit.Type, CorrelationId: credit.CorrelationId, Headers: credit.Headers})
	if err != nil || c != (Control{MsgID: "id", UpTo: 512}) {
		t.Fatalf("a credit read back as %+v, %v", c, err)
	}
	c, err = p.Streams.DecodeControl(&amqp.Delivery{Type: cancel.Type, CorrelationId: cancel.CorrelationId})
	if err != nil || c != (Control{MsgID: "id", Cancel: true}) {
		t.Fatalf("a cancel read back as %+v, %v", c, err)
	}
	for _, d := range []amqp.Delivery{
		{Type: CreditType, CorrelationId: "id"},                                          // no place
		{Type: CreditType, CorrelationId: "id", Headers: amqp.Table{CreditHeader: "12"}}, // not a number
		{Type: CreditType, CorrelationId: "id", Headers: amqp.Table{CreditHeader: int64(-1)}},
		{Type: CreditType, Headers: amqp.Table{CreditHeader: int64(1)}}, // no id
		{Type: "amqprpc.reply", CorrelationId: "id"},
	} {
		if _, err := p.Streams.DecodeControl(&d); err == nil {
			t.Fatalf("%+v read as a credit", d)
		}
	}
	if Oslo(OsloSettings{}).ErrNoStreams() == nil || p.ErrNoStreams() != nil {
		t.Fatal("only amqprpc's protocol has streams")
	}
}
