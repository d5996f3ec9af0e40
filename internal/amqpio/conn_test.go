package amqpio

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"amqp://guest:secret@host:5672/vh": "amqp://guest:xxxxx@host:5672/vh",
		"amqps://host/":                    "amqps://host/",
		"amqp://user@host/":                "amqp://user@host/",
		"::not a url":                      "<unparsable broker URL>",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q; want %q", in, got, want)
		}
	}
}

// TestConnectorMovesOn: a Connector connects again starting with the
// broker after the one it was connected to, and gives up on a broker
// that takes the connection but never answers (a frozen node) after its
// timeout, for the next.
func TestConnectorMovesOn(t *testing.T) {
	a, frozen, b := broker(t, true), broker(t, false), broker(t, true)
	k := NewConnector(Settings{URLs: []string{a.url, frozen.url, b.url}, Timeout: 300 * time.Millisecond})
	connect := func() time.Duration {
		t.Helper()
		start := time.Now()
		c, err := k.Connect(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		return time.Since(start)
	}
	connect()
	if a.count() != 1 || frozen.count()+b.count() != 0 {
		t.Fatalf("first connection: %d, %d, %d dials of the three brokers; want 1, 0, 0", a.count(), frozen.count(), b.count())
	}
	took := connect() // as after losing the connection to the first
	if frozen.count() != 1 || b.count() != 1 || a.count() != 1 {
		t.Errorf("connecting again: %d, %d, %d dials of the three brokers; want 1, 1, 1: the one after the first, then the next", a.count(), frozen.count(), b.count())
	}
	if took < 300*time.Millisecond || took > 3*time.Second {
		t.Errorf("connecting again took %v: the frozen broker's dial must be given up after the timeout, 300ms", took)
	}
	connect()
	if a.count() != 2 {
		t.Errorf("connecting a third time: %d dials of the first broker; want 2, the one after the last", a.count())
	}
}

// TestConnectorURLTimeout: a URL's connection_timeout bounds its dial.
func TestConnectorURLTimeout(t *testing.T) {
	frozen := broker(t, false)
	k := NewConnector(Settings{URLs: []string{frozen.url + "?connection_timeout=200"}, Timeout: time.Minute})
	start := time.Now()
	if _, err := k.Connect(context.Background()); err == nil {
		t.Fatal("connected to a broker that never answers")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("the dial took %v; the URL says 200ms", took)
	}
}

// listener accepts connections; one that answers takes each through the
// AMQP handshake and keeps it until the client closes it, one that does
// not (a frozen node) never writes a byte.
type listener struct {
	url string
	mu  sync.Mutex
	n   int
}

func (f *listener) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

func broker(t *testing.T, answers bool) *listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &listener{url: "amqp://guest:guest@" + l.Addr().String() + "/"}
	var wg sync.WaitGroup
	var conns []net.Conn
	t.Cleanup(func() {
		l.Close()
		f.mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		f.mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.n++
			conns = append(conns, c)
			f.mu.Unlock()
			if answers {
				wg.Go(func() { handshake(c) })
			}
		}
	})
	return f
}

// handshake plays a broker's part of the AMQP handshake on c, then
// answers connection.close until the client hangs up.
func handshake(c net.Conn) {
	defer c.Close()
	if _, err := io.ReadFull(c, make([]byte, 8)); err != nil { // the protocol header
		return
	}
	// start, start-ok; tune, tune-ok; open, open-ok
	for _, step := range []struct {
		write []byte
		reads int
	}{{connectionStart, 1}, {connectionTune, 2}, {connectionOpenOk, 0}} {
		if _, err := c.Write(step.write); err != nil {
			return
		}
		for range step.reads {
			if _, _, err := readMethod(c); err != nil {
				return
			}
		}
	}
	for {
		class, method, err := readMethod(c)
		if err != nil {
			return
		}
		if class == 10 && method == 50 { // connection.close
			c.Write(connectionCloseOk)
		}
	}
}

// TestConnectEndsWithItsContext: a context that ends as the broker takes
// the TCP connection ends the dial at once, however the two fall: never
// after the dial's timeout.
func TestConnectEndsWithItsContext(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	k := NewConnector(Settings{URLs: []string{"amqp://guest:guest@" + l.Addr().String() + "/"}, Timeout: 3 * time.Second})
	for range 50 {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan time.Duration, 1)
		go func() {
			start := time.Now()
			k.Connect(ctx)
			done <- time.Since(start)
		}()
		c := <-accepted // the broker has the connection: the client may not yet
		cancel()
		if took := <-done; took > time.Second {
			t.Fatalf("Connect returned %v after its context ended at the TCP connection; want at once", took)
		}
		c.Close()
	}
}
