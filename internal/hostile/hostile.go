// Package hostile is a peer that amqprpc did not write, for tests: a plain
// amqp091-go connection that can also send what amqp091-go itself never
// writes, and the messages that once cost an amqprpc server its
// connection.
package hostile

import (
	"bytes"
	"fmt"
	"net"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Dial connects to the broker at url as a plain amqp091-go client whose
// outgoing bytes pass through patch, when not nil.
func Dial(url string, patch func([]byte) []byte) (*amqp.Connection, error) {
	cfg := amqp.Config{}
	if patch != nil {
		cfg.Dial = func(network, addr string) (net.Conn, error) {
			c, err := net.Dial(network, addr)
			if err != nil {
				return nil, err
			}
			return patchConn{c, patch}, nil
		}
	}
	return amqp.DialConfig(url, cfg)
}

type patchConn struct {
	net.Conn
	patch func([]byte) []byte
}

func (c patchConn) Write(p []byte) (int, error) {
	if _, err := c.Conn.Write(c.patch(bytes.Clone(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// LongLongU returns a patch that turns every header named key, written by
// amqp091-go as a signed 64-bit integer ('l'), into an 'L' one, as py-amqp
// (kombu, oslo.messaging) writes every integer outside int32.
func LongLongU(key string) func([]byte) []byte {
	field := append([]byte{byte(len(key))}, key...)
	return func(b []byte) []byte {
		return bytes.ReplaceAll(b, append(field, 'l'), append(field, 'L'))
	}
}

// Nested returns a header table nested depth deep.
func Nested(depth int) amqp.Table {
	t := amqp.Table{"leaf": "x"}
	for range depth {
		t = amqp.Table{"n": t}
	}
	return t
}

// Wide returns a header table of n entries.
func Wide(n int) amqp.Table {
	t := make(amqp.Table, n)
	for i := range n {
		t[fmt.Sprint("k", i)] = int32(i)
	}
	return t
}

// BigHeader is the header that a connection patched with
// LongLongU(BigHeader) sends as an 'L'.
const BigHeader = "x-big"

// UnknownNode is a direct reply-to address that no broker makes, naming a
// node no broker knows: RabbitMQ closes the connection that publishes to
// it. A server refuses it before its request runs.
const UnknownNode = "amq.rabbitmq.reply-to.g2dkAA5yYWJiaXRAbm9ub2RlAAAAAAAAAAAAAAAA.abc"

// UnknownNodeHash is a direct reply-to address as RabbitMQ 3.10 to 4.x
// make them, whose node hash (reply@1111111) names no node of the broker:
// RabbitMQ closes the connection that publishes to it (541 INTERNAL_ERROR),
// and only the broker can tell.
const UnknownNodeHash = "amq.rabbitmq.reply-to.g1h2AA1yZXBseUAxMTExMTExAAADGgAAAABrFSjB.gj3BiMnRfRGmKCyM62fiSA=="

// Of Messages, Malformed are answered as malformed, Unanswerable cannot be
// answered where they ask, and the rest are served.
const (
	Malformed    = 2
	Unanswerable = 6
)

// Messages are, by name, requests for the method add that each made an
// amqprpc server lose its connection, on every delivery, forever; replyTo
// is where those that name a reply queue ask for it. Send them on a
// connection patched with LongLongU(BigHeader).
func Messages(replyTo string) map[string]amqp.Publishing {
	add := func(msgID string) []byte {
		return fmt.Appendf(nil, `{"method": "add", "args": {"v1": 2, "v2": 3}, "msg_id": %q}`, msgID)
	}
	long := strings.Repeat("x", 300)
	return map[string]amqp.Publishing{
		"an 'L' header":            {CorrelationId: "l", ReplyTo: replyTo, Headers: amqp.Table{BigHeader: int64(1) << 40}, Body: add("")},
		"headers nested 40 deep":   {CorrelationId: "deep", ReplyTo: replyTo, Headers: amqp.Table{"deep": Nested(40)}, Body: add("")},
		"10000 headers":            {CorrelationId: "wide", ReplyTo: replyTo, Headers: Wide(10000), Body: add("")},
		"an unknown node":          {CorrelationId: "node", ReplyTo: UnknownNode, Body: add("")},
		"an unknown node, batched": {CorrelationId: "node", ReplyTo: UnknownNode, Body: []byte(`{"method": "add", "batch_replies": true}`)},
		"a 300-byte msg_id":        {ReplyTo: replyTo, Body: add(long)},
		"a classic amq.topic":      {Body: add("amq.topic")},
		"a 300-byte batch id":      {Type: "amqprpc.requests", ReplyTo: replyTo, Body: fmt.Appendf(nil, `[{"id": %q, "deadline": 0, "request": {"method": "add"}}]`, long)},
		"a classic 300-byte name":  {Body: add(long)},
	}
}
