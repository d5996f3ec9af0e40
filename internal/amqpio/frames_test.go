package amqpio

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// headerFrame returns a content header frame of class basic on channel 1
// with the given headers table (its entries, without the length) and a
// correlation_id.
func headerFrame(table []byte, correlationID string) []byte {
	p := []byte{0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5} // class basic, weight, body size 5
	p = binary.BigEndian.AppendUint16(p, propHeaders|0x0400)
	p = binary.BigEndian.AppendUint32(p, uint32(len(table)))
	p = append(p, table...)
	p = append(p, byte(len(correlationID)))
	p = append(p, correlationID...)
	return frame(frameTypeHeader, p)
}

func frame(typ byte, payload []byte) []byte {
	f := []byte{typ, 0, 1}
	f = binary.BigEndian.AppendUint32(f, uint32(len(payload)))
	return append(append(f, payload...), 0xCE)
}

// entry returns a table entry of name, type typ and value.
func entry(name string, typ byte, value []byte) []byte {
	return append(append(append([]byte{byte(len(name))}, name...), typ), value...)
}

// dribble is a connection that hands out at most n bytes a read.
type dribble struct {
	net.Conn
	r io.Reader
	n int
}

func (d *dribble) Read(p []byte) (int, error) { return d.r.Read(p[:min(len(p), d.n)]) }
func (d *dribble) Close() error               { return nil }

func TestFrameReader(t *testing.T) {
	big := make([]byte, 8)
	binary.BigEndian.PutUint64(big, 1<<40)
	deep := entry("leaf", 'S', []byte{0, 0, 0, 1, 'x'})
	for range maxTableDepth + 1 {
		deep = append(entry("n", 'F', binary.BigEndian.AppendUint32(nil, uint32(len(deep)))), deep...)
	}
	method := frame(1, []byte{0, 60, 0, 60, 1, 2, 3})
	body := frame(3, bytes.Repeat([]byte("b"), 100<<10))
	stream := bytes.Join([][]byte{
		method,
		headerFrame(entry("x-big", 'L', big), "id-1"), body,
		headerFrame(deep, "id-2"), body,
		headerFrame(entry("x-odd", 'Z', big), "id-3"),
	}, nil)
	want := bytes.Join([][]byte{
		method,
		headerFrame(entry("x-big", 'l', big), "id-1"), body,
	}, nil)
	for _, n := range []int{1, 7, 4096, 1 << 20} {
		fr := NewFrameReader(&dribble{r: bytes.NewReader(bytes.Clone(stream)), n: n}, nil)
		got, err := io.ReadAll(fr)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(got, want) {
			t.Fatalf("reads of %d: the 'L' header is not an 'l' one, or frames changed", n)
		}
		// The rest: the deep table and the unknown type replaced by the
		// stand-in, the correlation_id kept.
		rest := got[len(want):]
		for _, id := range []string{"id-2", "id-3"} {
			size := int(binary.BigEndian.Uint32(rest[3:7]))
			h := rest[:frameHeaderLen+size+frameEndLen]
			if h[0] != frameTypeHeader || h[len(h)-1] != 0xCE || !bytes.Contains(h, []byte(UnreadableHeader)) || !bytes.HasSuffix(h, append([]byte(id), 0xCE)) {
				t.Fatalf("reads of %d: header frame %q; want the stand-in and correlation_id %s", n, h, id)
			}
			if _, _, why := scanProperties(h[frameHeaderLen : len(h)-frameEndLen]); why != nil {
				t.Fatalf("the stand-in does not read: %v", why)
			}
			rest = rest[len(h):]
			if id == "id-2" {
				if !bytes.HasPrefix(rest, body) {
					t.Fatalf("reads of %d: the body after the stand-in changed", n)
				}
				rest = rest[len(body):]
			}
		}
		if len(rest) != 0 {
			t.Fatalf("reads of %d: %d bytes more than sent", n, len(rest))
		}
	}
}

func TestFrameReaderTimesOut(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	fr := NewFrameReader(a, nil)
	fr.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	if _, err := fr.Read(make([]byte, 10)); err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("Read with a deadline and nothing to read = %v; want a timeout", err)
	}
}

// FuzzSanitizeHeaderFrame: whatever a content header holds, the frame
// the reader hands on is one whose properties amqp091-go reads.
func FuzzSanitizeHeaderFrame(f *testing.F) {
	big := binary.BigEndian.AppendUint64(nil, 1<<40)
	f.Add(headerFrame(entry("amqprpc-deadline", 'L', big), "id")[frameHeaderLen:])
	f.Add(headerFrame(entry("a", 'A', []byte{0, 0, 0, 2, 'V', 'V'}), "id")[frameHeaderLen:])
	f.Add(headerFrame(entry("d", 'D', []byte{1, 0, 0, 0, 1}), "")[frameHeaderLen:])
	f.Add([]byte{0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff})
	f.Add([]byte{0, 60}) // shorter than class, weight and body size
	f.Fuzz(func(t *testing.T, payload []byte) {
		in := frame(frameTypeHeader, payload)
		out := sanitizeHeaderFrame(in)
		if len(payload) < 12 {
			return
		}
		if size := int(binary.BigEndian.Uint32(out[3:7])); size != len(out)-frameHeaderLen-frameEndLen || out[len(out)-1] != 0xCE {
			t.Fatalf("frame size %d for %d bytes", size, len(out))
		}
		if _, _, why := scanProperties(out[frameHeaderLen : len(out)-frameEndLen]); why != nil {
			t.Fatalf("sanitized properties still unreadable: %v", why)
		}
	})
}

// BenchmarkFrameReader is what the reader under amqp091-go costs a
// delivered request (basic.deliver, a content header with the deadline
// header, a body), beside reading the same bytes plainly: ns/op is per
// 1000 requests.
func BenchmarkFrameReader(b *testing.B) {
	deliver := frame(1, append([]byte{0, 60, 0, 60, 31}, bytes.Repeat([]byte("t"), 31+8+1+1+8+4)...))
	deadline := entry("amqprpc-deadline", 'l', binary.BigEndian.AppendUint64(nil, 1767225600000))
	request := bytes.Join([][]byte{
		deliver,
		headerFrame(deadline, "6f0a8f4e-2b8e-4a8e-9a54-1c1f5b7f5d2e"),
		frame(3, []byte(`{"method":"add","args":{"v1":2,"v2":3},"msg_id":"6f0a8f4e-2b8e-4a8e-9a54-1c1f5b7f5d2e","batch_replies":true}`)),
	}, nil)
	stream := bytes.Repeat(request, 1000)
	buf := make([]byte, 4096) // amqp091-go reads through a bufio.Reader of 4096 bytes
	for _, bc := range []struct {
		name string
		wrap func(net.Conn) io.Reader
	}{
		{"plain", func(c net.Conn) io.Reader { return c }},
		{"frameReader", func(c net.Conn) io.Reader { return NewFrameReader(c, nil) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(stream)))
			for b.Loop() {
				r := bc.wrap(&dribble{r: bytes.NewReader(stream), n: 64 << 10})
				for {
					if _, err := r.Read(buf); err != nil {
						break
					}
				}
			}
		})
	}
}

// TestFrameReaderBudgetsDeliveriesOnly: the reader counts against its
// budget the bodies of deliveries (basic.deliver), and not those of
// messages the broker returned (basic.return), which no one gives back:
// each would hold a server's budget for good, until it read nothing more.
func TestFrameReaderBudgetsDeliveriesOnly(t *testing.T) {
	deliver := frame(frameTypeMethod, []byte{0, 60, 0, 60, 1, 'c'})
	returned := frame(frameTypeMethod, []byte{0, 60, 0, 50, 1, 0xF8})
	ack := frame(frameTypeMethod, []byte{0, 60, 0, 80, 0, 0, 0, 0, 0, 0, 0, 1, 0}) // a confirm
	otherAck := bytes.Clone(ack)
	otherAck[2] = 2                  // on channel 2
	header := headerFrame(nil, "id") // a body of 5 bytes
	body := frame(3, []byte("hello"))
	for _, tc := range []struct {
		name   string
		frames [][]byte
		held   int
	}{
		{"a delivery", [][]byte{deliver, header, body}, 5},
		{"a returned message", [][]byte{returned, header, body}, 0},
		{"returned, then delivered", [][]byte{returned, header, body, ack, deliver, header, body}, 5},
		{"a confirm of another channel between a delivery's frames", [][]byte{deliver, otherAck, header, body}, 5},
		{"a delivery, then a returned message", [][]byte{deliver, header, body, returned, header, body}, 5},
	} {
		for _, n := range []int{1, 7, 4096} {
			budget := NewBudget(1 << 20)
			fr := NewFrameReader(&dribble{r: bytes.NewReader(bytes.Join(tc.frames, nil)), n: n}, budget)
			if _, err := io.ReadAll(fr); err != nil {
				t.Fatal(err)
			}
			if budget.held != tc.held {
				t.Errorf("%s, read %d bytes at a time: %d bytes held; want %d", tc.name, n, budget.held, tc.held)
			}
		}
	}
}

// TestFrameReaderHandsOnADeliveryBeforeItWaits: a delivery read whole is
// handed on before the reader waits for the budget at the next one in
// the same read: its release may be what the wait needs.
func TestFrameReaderHandsOnADeliveryBeforeItWaits(t *testing.T) {
	deliver := frame(frameTypeMethod, []byte{0, 60, 0, 60, 1, 'c'})
	msg := bytes.Join([][]byte{deliver, headerFrame(nil, "id"), frame(3, []byte("hello"))}, nil)
	budget := NewBudget(8) // one body of 5 bytes at a time
	defer budget.close()
	fr := NewFrameReader(&dribble{r: bytes.NewReader(bytes.Repeat(msg, 2)), n: 1 << 20}, budget) // both in one read
	var mu sync.Mutex
	var got []byte
	go func() { // as amqp091-go reads: into a buffer larger than a message
		buf := make([]byte, 4096)
		for {
			n, err := fr.Read(buf)
			mu.Lock()
			got = append(got, buf[:n]...)
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	handedOn := func(n int) bool {
		for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			mu.Lock()
			ok := len(got) >= n
			mu.Unlock()
			if ok {
				return true
			}
		}
		return false
	}
	if !handedOn(len(msg)) {
		t.Fatal("the first delivery, read whole, waits with the second for the budget")
	}
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	early := len(got) >= 2*len(msg)
	mu.Unlock()
	if early {
		t.Fatal("the second delivery was read before the first gave the budget back")
	}
	budget.Release(5)
	if !handedOn(2 * len(msg)) {
		t.Fatal("the second delivery waits still, the first given back")
	}
	mu.Lock()
	defer mu.Unlock()
	if !bytes.Equal(got, bytes.Repeat(msg, 2)) {
		t.Fatalf("read %q; want the two deliveries", got)
	}
}
