package amqpio

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeAcknowledger records the acks an acker sends, standing in for a
// channel.
type fakeAcknowledger struct {
	mu   sync.Mutex
	acks []string
}

func (f *fakeAcknowledger) Ack(tag uint64, multiple bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.acks = append(f.acks, fmt.Sprintf("%d%s", tag, map[bool]string{true: "+", false: ""}[multiple]))
	return nil
}

func (f *fakeAcknowledger) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fmt.Sprint(f.acks)
}

func TestAcker(t *testing.T) {
	f := new(fakeAcknowledger)
	a := NewAcker(f, 16) // batch 4, behind 8
	// 2 finishes before 1; nothing is acked until the run from 1 is complete.
	a.Finish(2, true)
	time.Sleep(5 * AckDelay)
	if f.String() != "[]" {
		t.Fatalf("acked %v with tag 1 still running", f)
	}
	a.Finish(1, true)
	a.Finish(3, false) // settled by the worker (a nack): not acked
	a.Finish(4, true)  // the run 1..4 makes a batch: one multiple ack up to 4, at once
	if want := "[4+]"; f.String() != want {
		t.Fatalf("acks %v; want %s", f, want)
	}
	a.Finish(5, true) // less than a batch: acked within AckDelay
	if want := "[4+]"; f.String() != want {
		t.Fatalf("acks %v; want %s until AckDelay passes", f, want)
	}
	time.Sleep(5 * AckDelay)
	if want := "[4+ 5+]"; f.String() != want {
		t.Fatalf("acks %v; want %s after AckDelay", f, want)
	}

	// A slow delivery (6) does not hold back the acks of those after it.
	for tag := uint64(7); tag < 15; tag++ {
		a.Finish(tag, true)
	}
	if n := strings.Count(f.String(), " "); n != 1+8 {
		t.Fatalf("acks %v; want the 8 finished behind tag 6 acked one by one", f)
	}
	a.Finish(6, true)
	time.Sleep(5 * AckDelay)
	if s := f.String(); !strings.HasSuffix(s, " 6+]") {
		t.Fatalf("acks %v; want 6+ last, which covers no tag acked already but 6", s)
	}
	a.Stop()
}
