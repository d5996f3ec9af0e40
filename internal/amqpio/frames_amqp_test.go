package amqpio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// This file judges FrameReader by amqp091-go's own parser, not by ours: a
// fake broker writes one delivery down a net.Pipe, and a real amqp091-go
// connection reads it through FrameReader. Whatever the content header's
// table holds, amqp091-go must deliver the message and keep the connection.

// testBody is the body of the delivery, sent in two body frames.
var testBody = []byte("hello, amqp091-go")

// basicPropertyKinds lists the properties of class basic in the order of
// their flag bits from 0x8000 down, as the AMQP 0-9-1 spec gives them
// (content-type, content-encoding, headers, delivery-mode, priority,
// correlation-id, reply-to, expiration, message-id, timestamp, type,
// user-id, app-id, cluster-id): 's' a short string, 't' a table, 'o' an
// octet, 'T' a timestamp. It is written out again here, not taken from
// frames.go, so that the two are checked against each other.
const basicPropertyKinds = "sstoossssTssss"

// basicHeader returns a content header frame of class basic on channel 1
// for a body of bodySize bytes, with property flags flags and the headers
// table table (its entries; the headers flag is always set). Every other
// property flagged gets a small valid value; flag 0x0001 (another flags
// word follows) and 0x0002 (no property) add nothing.
func basicHeader(flags uint16, table []byte, bodySize int) []byte {
	flags |= propHeaders
	p := binary.BigEndian.AppendUint64([]byte{0, 60, 0, 0}, uint64(bodySize)) // class basic, weight 0
	p = binary.BigEndian.AppendUint16(p, flags)
	for i, kind := range []byte(basicPropertyKinds) {
		if flags&(0x8000>>i) == 0 {
			continue
		}
		switch kind {
		case 's':
			p = append(p, 2, 'i', 'd')
		case 'o':
			p = append(p, 1)
		case 'T':
			p = binary.BigEndian.AppendUint64(p, 1767225600)
		case 't':
			p = amqpLongstr(p, table)
		}
	}
	return frame(frameTypeHeader, p)
}

// amqpMethod returns a method frame on channel: class and method id, then
// the fields, each already encoded.
func amqpMethod(channel, class, method uint16, fields ...[]byte) []byte {
	p := binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, class), method)
	p = append(p, bytes.Join(fields, nil)...)
	f := binary.BigEndian.AppendUint16([]byte{1}, channel) // frame type 1: a method
	f = binary.BigEndian.AppendUint32(f, uint32(len(p)))
	return append(append(f, p...), 0xCE)
}

// amqpShortstr encodes s as a short string: a length octet, then s.
func amqpShortstr(s string) []byte { return append([]byte{byte(len(s))}, s...) }

// amqpLongstr appends b to p as a long string (or a field table, whose
// encoding is the same): a 4-byte length, then b.
func amqpLongstr(p, b []byte) []byte {
	return append(binary.BigEndian.AppendUint32(p, uint32(len(b))), b...)
}

// The frames the fake broker sends before the delivery.
var (
	capabilities = bytes.Join([][]byte{
		entry("consumer_cancel_notify", 't', []byte{1}),
		entry("publisher_confirms", 't', []byte{1}),
		entry("basic.nack", 't', []byte{1}),
		entry("connection.blocked", 't', []byte{1}),
	}, nil)
	serverProperties = append(
		entry("capabilities", 'F', amqpLongstr(nil, capabilities)),
		entry("product", 'S', amqpLongstr(nil, []byte("amqprpc fake broker")))...)
	connectionStart = amqpMethod(0, 10, 10, []byte{0, 9}, // version 0-9
		amqpLongstr(nil, serverProperties), amqpLongstr(nil, []byte("PLAIN")), amqpLongstr(nil, []byte("en_US")))
	connectionTune = amqpMethod(0, 10, 30, []byte{0x07, 0xff}, // channel-max 2047
		binary.BigEndian.AppendUint32(nil, 131072), []byte{0, 0}) // frame-max, heartbeat 0
	connectionOpenOk  = amqpMethod(0, 10, 41, amqpShortstr(""))
	connectionCloseOk = amqpMethod(0, 10, 51)
	channelOpenOk     = amqpMethod(1, 20, 11, amqpLongstr(nil, nil))
	consumeOk         = amqpMethod(1, 60, 21, amqpShortstr("c"))
	basicDeliver      = amqpMethod(1, 60, 60, amqpShortstr("c"), // consumer tag
		binary.BigEndian.AppendUint64(nil, 1), []byte{0}, // delivery tag, not redelivered
		amqpShortstr("ex"), amqpShortstr("rk"))
)

// fakeBroker serves one connection the way amqp091-go expects a broker to:
// the handshake up to basic.consume-ok, then content (a basic.deliver and
// what follows it), then close-ok to connection.close until the client
// hangs up. It closes conn when it returns.
func fakeBroker(conn net.Conn, content []byte) error {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second)) // it always ends
	proto := make([]byte, 8)
	if _, err := io.ReadFull(conn, proto); err != nil || string(proto) != "AMQP\x00\x00\x09\x01" {
		return fmt.Errorf("protocol header %q: %v", proto, err)
	}
	if _, err := conn.Write(connectionStart); err != nil {
		return err
	}
	for _, step := range []struct {
		class, method uint16 // what the client sends
		reply         []byte
	}{
		{10, 11, connectionTune},   // connection.start-ok
		{10, 31, nil},              // connection.tune-ok
		{10, 40, connectionOpenOk}, // connection.open
		{20, 10, channelOpenOk},    // channel.open
		{60, 20, append(bytes.Clone(consumeOk), content...)}, // basic.consume
	} {
		class, method, err := readMethod(conn)
		if err != nil {
			return fmt.Errorf("waiting for %d.%d: %w", step.class, step.method, err)
		}
		if class != step.class || method != step.method {
			return fmt.Errorf("got method %d.%d; want %d.%d", class, method, step.class, step.method)
		}
		if _, err := conn.Write(step.reply); err != nil && step.class != 60 {
			return err // a client that fails the connection on the content is for it to report
		}
	}
	for {
		class, method, err := readMethod(conn)
		if err != nil {
			return nil // the client hung up
		}
		if class == 10 && method == 50 { // connection.close
			conn.Write(connectionCloseOk)
		}
	}
}

// readMethod reads frames from r up to a method frame and returns its
// class and method id.
func readMethod(r io.Reader) (class, method uint16, err error) {
	for {
		head := make([]byte, 7)
		if _, err := io.ReadFull(r, head); err != nil {
			return 0, 0, err
		}
		rest := make([]byte, binary.BigEndian.Uint32(head[3:7])+1)
		if _, err := io.ReadFull(r, rest); err != nil {
			return 0, 0, err
		}
		if rest[len(rest)-1] != 0xCE {
			return 0, 0, errors.New("no frame end")
		}
		if head[0] == 1 && len(rest) >= 5 {
			return binary.BigEndian.Uint16(rest), binary.BigEndian.Uint16(rest[2:]), nil
		}
	}
}

// deliverThroughAMQP091 has the fake broker deliver a message whose content
// header is header and whose body is testBody to a consumer of a real
// amqp091-go connection that reads through FrameReader. It returns nil if
// amqp091-go delivered the message, body intact, and kept the connection
// open. It closes everything it opens and waits for the fake broker, so
// that no goroutine, its own or amqp091-go's, outlives the call.
func deliverThroughAMQP091(header []byte) error {
	client, server := net.Pipe()
	content := bytes.Join([][]byte{basicDeliver, header,
		frame(3, testBody[:5]), frame(3, testBody[5:])}, nil)
	broker := make(chan error, 1)
	go func() { broker <- fakeBroker(server, content) }()
	err := consumeOne(client)
	client.Close() // if amqp091-go never took it over
	if berr := <-broker; err == nil && berr != nil {
		err = fmt.Errorf("fake broker: %w", berr)
	}
	return err
}

// consumeOne opens an amqp091-go connection over client, through
// FrameReader, consumes one delivery and closes the connection.
func consumeOne(client net.Conn) error {
	conn, err := amqp.DialConfig("amqp://guest:guest@fake-broker/", amqp.Config{
		Dial: func(network, addr string) (net.Conn, error) { return NewFrameReader(client, nil), nil },
	})
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("channel: %w", err)
	}
	deliveries, err := ch.Consume("q", "c", true, // autoAck
		false, false, false, nil) // exclusive, noLocal, noWait
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	select {
	case d, ok := <-deliveries:
		if !ok {
			return fmt.Errorf("no delivery; amqp091-go closed the connection: %v", <-closed)
		}
		if !bytes.Equal(d.Body, testBody) {
			return fmt.Errorf("body %q; want %q", d.Body, testBody)
		}
	case err := <-closed:
		return fmt.Errorf("no delivery; amqp091-go closed the connection: %v", err)
	case <-time.After(5 * time.Second):
		return errors.New("no delivery after 5s")
	}
	select {
	case err := <-closed:
		return fmt.Errorf("delivered, but amqp091-go closed the connection: %v", err)
	default:
	}
	if conn.IsClosed() {
		return errors.New("delivered, but the connection is closed")
	}
	return nil
}

// sameSizeTable returns a headers table that amqp091-go cannot read,
// a string of padding then unreadable, padded so that the content header
// basicHeader(flags, table, len(testBody)) and its stand-in have the same
// size.
func sameSizeTable(flags uint16, unreadable []byte) []byte {
	table := func(pad int) []byte {
		return append(entry("pad", 'S', amqpLongstr(nil, make([]byte, pad))), unreadable...)
	}
	f := basicHeader(flags, table(0), len(testBody))
	grow := len(sanitizeHeaderFrame(bytes.Clone(f))) - len(f)
	if grow < 0 {
		panic("the stand-in is smaller than the unpadded frame")
	}
	return table(grow)
}

// unknownField is a table entry of a field type amqp091-go does not know.
var unknownField = entry("z", 'Z', nil)

// withCorrelationID flags the headers and a correlation_id, as headerFrame.
const withCorrelationID = propHeaders | 0x0400

// TestFrameReaderSameSizeStandIn: a content header whose table amqp091-go
// cannot read is replaced by its stand-in even when the two frames have the
// same size.
func TestFrameReaderSameSizeStandIn(t *testing.T) {
	long := entry("big", 'L', binary.BigEndian.AppendUint64(nil, 1<<40))
	for _, c := range []struct {
		name     string
		flags    uint16
		table    []byte
		sameSize bool // the stand-in, or the patched frame, has the size of the original
	}{
		{"unknown field type, same size", withCorrelationID, sameSizeTable(withCorrelationID, unknownField), true},
		{"'L' then an unknown field type, same size", withCorrelationID, sameSizeTable(withCorrelationID, append(bytes.Clone(long), unknownField...)), true},
		{"two flags words, same size", withCorrelationID | propMoreFlags, sameSizeTable(withCorrelationID|propMoreFlags, unknownField), true},
		{"control: unknown field type, larger stand-in", withCorrelationID, unknownField, false},
		{"control: 'L' patched in place", withCorrelationID, long, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := basicHeader(c.flags, c.table, len(testBody))
			if got := len(sanitizeHeaderFrame(bytes.Clone(f))); (got == len(f)) != c.sameSize {
				t.Fatalf("sanitized frame of %d bytes from %d; same size wanted: %v", got, len(f), c.sameSize)
			}
			if err := deliverThroughAMQP091(f); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// FuzzHeaderFrameThroughAMQP091: whatever the headers table and the
// property flags of a content header, amqp091-go reading through
// FrameReader delivers the message and keeps the connection. The seeds are
// FuzzSanitizeHeaderFrame's, as flags and table, and the same-size case.
func FuzzHeaderFrameThroughAMQP091(f *testing.F) {
	big := binary.BigEndian.AppendUint64(nil, 1<<40)
	f.Add(uint16(withCorrelationID), entry("amqprpc-deadline", 'L', big))
	f.Add(uint16(withCorrelationID), entry("a", 'A', []byte{0, 0, 0, 2, 'V', 'V'}))
	f.Add(uint16(withCorrelationID), entry("d", 'D', []byte{1, 0, 0, 0, 1}))
	f.Add(uint16(0xffff), []byte{}) // every flag, two flags words among them
	f.Add(uint16(0), []byte{})      // only the headers, empty (the seed too short to be a header has no equivalent)
	f.Add(uint16(withCorrelationID), sameSizeTable(withCorrelationID, unknownField))
	f.Fuzz(func(t *testing.T, flags uint16, table []byte) {
		header := basicHeader(flags, table, len(testBody))
		if len(header) > 131072 {
			t.Skip("larger than frame-max: no broker sends it")
		}
		if err := deliverThroughAMQP091(header); err != nil {
			t.Fatal(err)
		}
	})
}
