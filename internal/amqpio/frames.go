package amqpio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// FrameReader is the reading side of every connection under amqp091-go: it
// hands on the broker's frames as they come, except that it makes each
// content header, the one frame whose content another client wrote, one
// that amqp091-go can parse. amqp091-go fails the whole connection on a
// header table it cannot read, and RabbitMQ delivers tables that other
// clients write and amqp091-go cannot read: field type 'L' (py-amqp, and so
// kombu and oslo.messaging, writes every integer outside int32 so), tables
// and arrays nested more than maxTableDepth deep or of more than
// maxTableEntries entries, and field types it does not know. An 'L' becomes
// an 'l' (the same 8 bytes, read as a signed integer, as py-amqp writes
// them); a table that cannot be read otherwise is replaced by the stand-in
// {UnreadableHeader: "<why>"}, which servers answer as malformed and
// clients ignore. Nothing else of a message changes.
//
// It reads the connection in large chunks and scans each frame's 7-byte
// header; only content headers, a few dozen bytes each, are read whole.
// The content header of a delivery (basic.deliver) is also where its
// body is admitted to the connection's budget, if it has one: the reader
// waits there while the budget is spent (see Budget). Other messages (a
// message the broker returned, basic.return) are not counted: nothing
// would give them back. It follows the deliveries of one channel at a
// time, as RabbitMQ writes a message's frames together; a delivery whose
// frames another channel's delivery interleaved would go uncounted.
type FrameReader struct {
	net.Conn
	budget  *Budget // nil for none
	buf     []byte  // buf[r:w] is read from the connection and not yet handed on
	r, w    int
	vetted  int  // bytes from buf[r] on, read or still to come, of frames already checked
	started bool // the first frame has been seen
	// delivery is the channel of the last basic.deliver; while delivering,
	// no other method came on that channel since, and the content header
	// that comes next on it is the delivery's.
	delivery   uint16
	delivering bool

	mu       sync.Mutex
	deadline time.Time // the read deadline amqp091-go last set
}

// UnreadableHeader is the only header of a message whose headers
// amqp091-go could not have read; its value says why.
const UnreadableHeader = "amqprpc-unreadable-headers"

// What amqp091-go v1.16 reads of a field table: tables and arrays nested at
// most maxTableDepth deep, of at most maxTableEntries entries each.
const (
	maxTableDepth   = 32
	maxTableEntries = 8192
)

const (
	frameHeaderLen     = 7 // type, channel, size
	frameTypeMethod    = 1
	frameTypeHeader    = 2           // a content header
	methodBasicDeliver = 60<<16 | 60 // class basic, method deliver
	frameEndLen        = 1
	readChunk          = 64 << 10
	// maxHeaderFrame is the largest content header read whole: larger
	// than any frame RabbitMQ sends (its frame_max is at most 1 MiB), so
	// that a peer that is not one cannot make the reader buffer more.
	maxHeaderFrame = 4 << 20
)

// NewFrameReader returns the reader of conn, which admits the bodies of
// messages to budget, if not nil.
func NewFrameReader(conn net.Conn, budget *Budget) *FrameReader {
	return &FrameReader{Conn: conn, budget: budget, buf: make([]byte, readChunk)}
}

// SetReadDeadline sets the read deadline, as amqp091-go does to find a
// broker that stopped sending heartbeats, and records it: a wait for the
// budget is not the broker's silence, and moves the deadline on.
func (f *FrameReader) SetReadDeadline(t time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deadline = t
	return f.Conn.SetReadDeadline(t)
}

// Close closes the connection and ends a wait for the budget.
func (f *FrameReader) Close() error {
	f.budget.close()
	return f.Conn.Close()
}

// Read hands on checked bytes: from the buffer, as many frames as are
// there and fit, or, for a large frame that needs no check, straight from
// the connection.
//
// A connection whose reading fails is dead: Read then closes it, which
// ends the writes blocked on it too (a stalled network, found out by
// amqp091-go's heartbeat deadline), before amqp091-go's shutdown waits for
// them.
func (f *FrameReader) Read(p []byte) (int, error) {
	n, err := f.read(p)
	if err != nil {
		f.Close()
	}
	return n, err
}

func (f *FrameReader) read(p []byte) (int, error) {
	for f.vetted == 0 {
		if err := f.vet(); err != nil {
			return 0, err
		}
	}
	if f.r == f.w {
		if f.vetted >= readChunk/2 && len(p) >= readChunk/2 { // a large body: no copy
			n, err := f.Conn.Read(p[:min(len(p), f.vetted)])
			f.vetted -= n
			return n, err
		}
		if err := f.fill(1); err != nil {
			return 0, err
		}
	}
	n := 0
	for {
		m := copy(p[n:], f.buf[f.r:min(f.w, f.r+f.vetted)])
		n += m
		f.r += m
		f.vetted -= m
		if n == len(p) || f.vetted > 0 || !f.buffered() {
			return n, nil
		}
		if f.budget != nil && f.buf[f.r] == frameTypeHeader {
			// Its admission may wait for the budget, which a delivery in
			// the bytes read so far may be what frees: they go on first.
			return n, nil
		}
		f.vet() // cannot fail, or wait: the frame is in the buffer
	}
}

// buffered reports whether the next frame can be checked without reading:
// its header is in the buffer and, for a content header, all of it.
func (f *FrameReader) buffered() bool {
	if f.w-f.r < frameHeaderLen {
		return false
	}
	head := f.buf[f.r:]
	size := frameHeaderLen + int(binary.BigEndian.Uint32(head[3:7])) + frameEndLen
	switch {
	case head[0] == frameTypeMethod:
		return f.w-f.r >= min(size, frameHeaderLen+4) // its class and method
	case head[0] == frameTypeHeader && size <= maxHeaderFrame:
		return f.w-f.r >= size
	}
	return true
}

// vet checks the frame that starts at buf[r].
func (f *FrameReader) vet() error {
	if err := f.fill(frameHeaderLen); err != nil {
		return err
	}
	head := f.buf[f.r:]
	if !f.started && head[0] == 'A' { // "AMQP": the broker refuses our protocol version
		f.vetted = f.w - f.r
		return nil
	}
	f.started = true
	size := frameHeaderLen + int(binary.BigEndian.Uint32(head[3:7])) + frameEndLen
	if head[0] == frameTypeMethod {
		if err := f.fill(min(size, frameHeaderLen+4)); err != nil {
			return err
		}
		head = f.buf[f.r:]
		channel := binary.BigEndian.Uint16(head[1:3])
		switch {
		case size >= frameHeaderLen+4 && binary.BigEndian.Uint32(head[frameHeaderLen:]) == methodBasicDeliver:
			f.delivery, f.delivering = channel, true
		case channel == f.delivery: // another method: what follows is not a delivery's
			f.delivering = false
		}
	}
	if head[0] != frameTypeHeader || size > maxHeaderFrame {
		f.vetted = size
		return nil
	}
	if err := f.fill(size); err != nil {
		return err
	}
	frame := f.buf[f.r : f.r+size]
	if err := f.admit(frame); err != nil {
		return err
	}
	fixed := sanitizeHeaderFrame(frame)
	if &fixed[0] != &frame[0] { // the table was replaced: splice the new frame in
		rest := f.buf[f.r+size : f.w]
		buf := make([]byte, max(len(fixed)+len(rest), readChunk))
		copy(buf[copy(buf, fixed):], rest)
		f.buf, f.r, f.w = buf, 0, len(fixed)+len(rest)
	}
	f.vetted = len(fixed)
	return nil
}

// admit admits the body that the content header frame announces to the
// budget, waiting as long as it must, and moves the read deadline on by
// the wait.
func (f *FrameReader) admit(frame []byte) error {
	if f.budget == nil || len(frame) < frameHeaderLen+12 || !f.delivering || binary.BigEndian.Uint16(frame[1:3]) != f.delivery {
		return nil
	}
	f.delivering = false
	size := binary.BigEndian.Uint64(frame[frameHeaderLen+4:]) // after class and weight
	waited, err := f.budget.admit(int(min(size, 1<<40)))
	if err != nil || waited == 0 {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.deadline.IsZero() {
		f.deadline = f.deadline.Add(waited)
		f.Conn.SetReadDeadline(f.deadline)
	}
	return nil
}

// fill reads until buf[r:w] holds at least n bytes, growing the buffer for
// a content header larger than it.
func (f *FrameReader) fill(n int) error {
	if f.w-f.r >= n {
		return nil
	}
	if len(f.buf)-f.r < n || f.r == f.w {
		buf := f.buf
		if len(buf) < n {
			buf = make([]byte, n)
		}
		f.w = copy(buf, f.buf[f.r:f.w])
		f.buf, f.r = buf, 0
	}
	for f.w-f.r < n {
		m, err := f.Conn.Read(f.buf[f.w:])
		f.w += m
		if err != nil && f.w-f.r < n {
			return err
		}
	}
	return nil
}

// Content header properties, by flag bit, and what each holds.
const (
	propHeaders   = 0x2000
	propMoreFlags = 0x0001 // another flags word follows: never for class basic
)

// propertyKinds lists the properties of class basic in the order of their
// flag bits, from 0x8000 down: 's' a short string, 't' a table, 'o' an
// octet, 'T' a timestamp.
const propertyKinds = "sstoossssTssss"

// sanitizeHeaderFrame returns frame, a whole content header frame, as it
// is when amqp091-go can read it, patched in place when only 'L' fields
// stand in the way, and otherwise a new frame whose headers table is a
// stand-in that says why.
func sanitizeHeaderFrame(frame []byte) []byte {
	payload := frame[frameHeaderLen : len(frame)-frameEndLen]
	if len(payload) < 12 { // no class, weight and body size: no broker sends it
		return frame
	}
	start, end, why := scanProperties(payload)
	switch {
	case why == nil:
		return frame
	case start < 0: // the properties themselves do not parse: keep only the stand-in
		const flagsAt = frameHeaderLen + 12 // after class, weight and body size
		head := binary.BigEndian.AppendUint16(append([]byte(nil), frame[:flagsAt]...), propHeaders)
		return standIn(head, frame[len(frame)-frameEndLen:], why)
	}
	return standIn(frame[:frameHeaderLen+start], frame[frameHeaderLen+end:], why)
}

// standIn returns the content header frame made of head, the stand-in
// headers table that says why, and tail, with its size set.
func standIn(head, tail []byte, why error) []byte {
	msg := why.Error()
	if len(msg) > 200 {
		msg = msg[:200]
	}
	table := make([]byte, 0, 64+len(msg))
	table = append(table, byte(len(UnreadableHeader)))
	table = append(table, UnreadableHeader...)
	table = append(table, 'S')
	table = binary.BigEndian.AppendUint32(table, uint32(len(msg)))
	table = append(table, msg...)

	out := make([]byte, 0, len(head)+4+len(table)+len(tail))
	out = append(out, head...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(table)))
	out = append(out, table...)
	out = append(out, tail...)
	binary.BigEndian.PutUint32(out[3:7], uint32(len(out)-frameHeaderLen-frameEndLen))
	return out
}

// scanProperties checks the properties of a content header payload. It
// patches 'L' fields of the headers table to 'l' in place; when something
// else is in the way of amqp091-go, it returns why, with the bounds of the
// headers table (length field included) or, when the properties do not
// parse at all, start < 0.
func scanProperties(p []byte) (start, end int, why error) {
	if len(p) < 14 {
		return -1, -1, errors.New("content header too short")
	}
	flags := binary.BigEndian.Uint16(p[12:14])
	if flags&propMoreFlags != 0 {
		return -1, -1, errors.New("content header with more than one flags word")
	}
	at := 14
	start, end = -1, -1
	for i, kind := range []byte(propertyKinds) {
		if flags&(0x8000>>i) == 0 {
			continue
		}
		var err error
		switch kind {
		case 's':
			at, err = skip(p, at, 1, int(at8(p, at)))
		case 'o':
			at, err = skip(p, at, 1, 0)
		case 'T':
			at, err = skip(p, at, 8, 0)
		case 't':
			start = at
			var n int
			if n, err = length32(p, at); err == nil {
				why = scanTable(p[at+4:at+4+n], 0)
				at += 4 + n
			}
			end = at
		}
		if err != nil {
			return -1, -1, err
		}
	}
	return start, end, why
}

var errTruncated = errors.New("truncated")

// skip returns the offset after a field of fixed bytes and then n more,
// starting at at.
func skip(p []byte, at, fixed, n int) (int, error) {
	if at+fixed+n > len(p) {
		return 0, errTruncated
	}
	return at + fixed + n, nil
}

func at8(p []byte, at int) byte {
	if at < len(p) {
		return p[at]
	}
	return 0
}

// length32 reads a 4-byte length at p[at] and checks that what it counts
// follows.
func length32(p []byte, at int) (int, error) {
	if at+4 > len(p) {
		return 0, errTruncated
	}
	n := binary.BigEndian.Uint32(p[at:])
	if n > uint32(len(p)-at-4) {
		return 0, errTruncated
	}
	return int(n), nil
}

// scanTable checks the entries of a field table at nesting depth depth,
// patching 'L' to 'l', and returns what amqp091-go could not read.
func scanTable(t []byte, depth int) error { return scanContainer(t, depth, true) }

// scanContainer checks a field table (keyed) or a field array, as
// scanTable.
func scanContainer(b []byte, depth int, keyed bool) error {
	if depth > maxTableDepth {
		return fmt.Errorf("tables or arrays nested more than %d deep", maxTableDepth)
	}
	for at, n := 0, 0; at < len(b); n++ {
		if n == maxTableEntries {
			return fmt.Errorf("a table or array of more than %d entries", maxTableEntries)
		}
		if keyed { // a short string: the entry's name
			at += 1 + int(b[at])
			if at >= len(b) {
				return errTruncated
			}
		}
		var err error
		if at, err = scanField(b, at, depth); err != nil {
			return err
		}
	}
	return nil
}

// fixedFieldSizes is the size of the value of each fixed-size field type
// that amqp091-go reads.
var fixedFieldSizes = [256]int8{'t': 1, 'B': 1, 'b': 1, 's': 2, 'u': 2, 'I': 4, 'i': 4, 'f': 4, 'l': 8, 'd': 8, 'T': 8, 'D': 5, 'V': 0, 'L': 8}

// scanField checks the field whose type byte is b[at] and returns the
// offset after it.
func scanField(b []byte, at, depth int) (int, error) {
	typ := b[at]
	at++
	switch typ {
	case 'S', 'x':
		n, err := length32(b, at)
		return at + 4 + n, err
	case 'F', 'A':
		n, err := length32(b, at)
		if err != nil {
			return 0, err
		}
		return at + 4 + n, scanContainer(b[at+4:at+4+n], depth+1, typ == 'F')
	case 'L':
		b[at-1] = 'l'
	}
	size := fixedFieldSizes[typ]
	if size == 0 && typ != 'V' {
		return 0, fmt.Errorf("field type %q", typ)
	}
	if at+int(size) > len(b) {
		return 0, errTruncated
	}
	return at + int(size), nil
}
