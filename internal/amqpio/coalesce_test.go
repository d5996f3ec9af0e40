package amqpio

import (
	"bytes"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// slowConn is a net.Conn whose writes take a while, as a busy socket's
// do, and that records what it was given.
type slowConn struct {
	net.Conn
	mu     sync.Mutex
	got    bytes.Buffer
	writes atomic.Int64
	block  chan struct{} // when set, writes wait for it to close
}

func (c *slowConn) Write(p []byte) (int, error) {
	if c.block != nil {
		<-c.block
		return 0, net.ErrClosed
	}
	time.Sleep(50 * time.Microsecond)
	c.writes.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.got.Write(p)
}

func (c *slowConn) Close() error {
	if c.block != nil {
		close(c.block)
	}
	return nil
}

// TestCoalescerKeepsEveryWriteAndOrder: writes from many goroutines all
// arrive, each writer's in its order, in fewer write system calls than
// writes.
func TestCoalescerKeepsEveryWriteAndOrder(t *testing.T) {
	conn := new(slowConn)
	c := newCoalescer(conn)
	const writers, each = 16, 200
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if _, err := c.Write([]byte{byte(w), byte(i)}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	c.drain()
	c.Close()
	got := conn.got.Bytes()
	if len(got) != 2*writers*each {
		t.Fatalf("%d bytes out; want %d", len(got), 2*writers*each)
	}
	next := make([]int, writers)
	for i := 0; i < len(got); i += 2 {
		w, n := got[i], int(got[i+1])
		if n != next[w]%256 {
			t.Fatalf("writer %d: frame %d after %d", w, n, next[w]-1)
		}
		next[w]++
	}
	if n := conn.writes.Load(); n >= writers*each {
		t.Fatalf("%d write system calls for %d writes: nothing coalesced", n, writers*each)
	} else {
		t.Logf("%d writes in %d system calls", writers*each, n)
	}
}

// TestCoalescerCloseEndsAStuckWrite: Close returns while a write is stuck
// in the network, and later writes fail.
func TestCoalescerCloseEndsAStuckWrite(t *testing.T) {
	conn := &slowConn{block: make(chan struct{})}
	c := newCoalescer(conn)
	go c.Write([]byte("stuck"))
	time.Sleep(10 * time.Millisecond)
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waits for a stuck write")
	}
	if _, err := c.Write([]byte("after")); err == nil {
		t.Fatal("a write after Close succeeded")
	}
}
