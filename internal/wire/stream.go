package wire

import (
	"encoding/json"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Streams. A request for a stream carries, in the header StreamHeader,
// the window: how many items its caller takes before it grants more. Its
// server sends the items to the caller's reply queue, several to a
// message, each message numbered by its first item's place in the stream,
// then one message that ends the stream; the caller grants more items to
// the server's own credit queue, which every stream message names:
//
//	items:  type amqprpc.items, correlation_id <msg_id>, headers amqprpc-seq <first item's place>, amqprpc-credit-to <queue>
//	        body [item, item, ...]            (no items: a beat, the server still runs the stream)
//	end:    type amqprpc.end, the same headers, amqprpc-seq the number of items sent
//	        body {"result": null} or {"failure": {...}}
//	credit: type amqprpc.credit, correlation_id <msg_id>, header amqprpc-credit <the place up to which the server may send, exclusive>
//	cancel: type amqprpc.cancel, correlation_id <msg_id>
//
// docs/PROTOCOL.md says the rest: the window, beats, what ends a stream.
const (
	ItemsType  = "amqprpc.items"
	EndType    = "amqprpc.end"
	CreditType = "amqprpc.credit"
	CancelType = "amqprpc.cancel"
	// StreamHeader, on a request, asks for a stream and says its window.
	StreamHeader = "amqprpc-stream"
	// SeqHeader numbers a stream message: its first item's place, from 0,
	// or, on its end, how many items the stream sent.
	SeqHeader = "amqprpc-seq"
	// CreditToHeader names the queue a stream's caller sends credits to.
	CreditToHeader = "amqprpc-credit-to"
	// CreditHeader is the place up to which a stream's server may send.
	CreditHeader = "amqprpc-credit"
)

// Streams carries a stream: its items and its end to its caller, its
// caller's credits and cancellation to its server.
type Streams interface {
	// EncodeItems fills pub with items (each a JSON value), the stream
	// msgID's from place seq on; none is a beat.
	EncodeItems(pub *amqp.Publishing, msgID, creditTo string, seq int64, items []json.RawMessage)
	// EncodeEnd fills pub with the end of stream msgID, after count
	// items, with failure if it failed.
	EncodeEnd(pub *amqp.Publishing, msgID, creditTo string, count int64, failure *Failure) error
	// EncodeCredit fills pub with a credit: the server of stream msgID
	// may send the items before place upTo.
	EncodeCredit(pub *amqp.Publishing, msgID string, upTo int64)
	// EncodeCancel fills pub with the cancellation of stream msgID.
	EncodeCancel(pub *amqp.Publishing, msgID string)
	// DecodeControl reads a credit or a cancellation.
	DecodeControl(d *amqp.Delivery) (c Control, err error)
	// SplitItems returns the items of r, a reply of kind Items.
	SplitItems(r *Reply) ([]json.RawMessage, error)
}

// Control is what a stream's caller tells its server: a credit, or that
// it cancelled the stream.
type Control struct {
	MsgID  string
	UpTo   int64 // the server may send the items before this place
	Cancel bool
}

func (classic) EncodeItems(pub *amqp.Publishing, msgID, creditTo string, seq int64, items []json.RawMessage) {
	n := 2
	for _, it := range items {
		n += len(it) + 1
	}
	body := make([]byte, 0, n)
	body = append(body, '[')
	for i, it := range items {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, it...)
	}
	body = append(body, ']')
	pub.ContentType = contentTypeJSON
	pub.Type = ItemsType
	pub.CorrelationId = msgID
	pub.Headers = amqp.Table{SeqHeader: seq, CreditToHeader: creditTo}
	pub.Body = body
}

func (c classic) EncodeEnd(pub *amqp.Publishing, msgID, creditTo string, count int64, failure *Failure) error {
	if err := c.EncodeReply(pub, msgID, "", nil, failure); err != nil {
		return err
	}
	pub.Type = EndType
	pub.Headers = amqp.Table{SeqHeader: count, CreditToHeader: creditTo}
	return nil
}

func (classic) EncodeCredit(pub *amqp.Publishing, msgID string, upTo int64) {
	pub.Type = CreditType
	pub.CorrelationId = msgID
	pub.Headers = amqp.Table{CreditHeader: upTo}
}

func (classic) EncodeCancel(pub *amqp.Publishing, msgID string) {
	pub.Type = CancelType
	pub.CorrelationId = msgID
}

func (classic) DecodeControl(d *amqp.Delivery) (Control, error) {
	c := Control{MsgID: d.CorrelationId}
	switch d.Type {
	case CancelType:
		c.Cancel = true
	case CreditType:
		n, ok := Integer(d.Headers[CreditHeader])
		if !ok || n < 0 {
			return c, malformed("a stream's credit without a place")
		}
		c.UpTo = n
	default:
		return c, fmt.Errorf("%w: a message of type %s where credits go", ErrMalformed, Clip(d.Type))
	}
	if c.MsgID == "" {
		return c, malformed("a stream's credit without a correlation_id")
	}
	return c, nil
}

func (classic) SplitItems(r *Reply) ([]json.RawMessage, error) {
	var items []json.RawMessage
	if err := json.Unmarshal(r.Body, &items); err != nil {
		return nil, fmt.Errorf("%w: %v", malformed("a stream's items are not a JSON array"), err)
	}
	return items, nil
}

// streamReply reads what d says of its stream into r, when it is a
// stream's message.
func streamReply(d *amqp.Delivery, r *Reply) {
	switch d.Type {
	case ItemsType:
		r.Kind = Items
	case EndType:
		r.Kind = End
	default:
		return
	}
	r.Seq, _ = Integer(d.Headers[SeqHeader])
	r.CreditTo, _ = d.Headers[CreditToHeader].(string)
}

// maxWindow bounds the window a request asks for: a server takes a
// caller's word for how many items it may send unasked, up to this.
const maxWindow = 1 << 16
