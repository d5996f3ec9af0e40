//go:build chaos

package chaos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amqprpc/amqprpc/internal/testsvc"
	"github.com/amqprpc/amqprpc/runtime"
)

// The overload scenario: one server process runs overloadPrefetch calls
// of Work(id, overloadWork) at once, so it serves
// overloadPrefetch/overloadWork calls a second (400), whatever the CPU;
// its topic's queue holds at most overloadLimit waiting calls
// (WithQueueLimit). Callers offer three times what it serves for
// overloadFor.
const (
	overloadPrefetch = 8
	overloadWork     = 20 * time.Millisecond
	overloadLimit    = overloadPrefetch / 2
	overloadFactor   = 3
	overloadFor      = 60 * time.Second
	overloadTimeout  = 5 * time.Second // each call's deadline
)

// serveOverloaded is the server process of the overload scenario:
// AMQPRPC_OVERLOAD_SERVE=topic,queue type.
func serveOverloaded(topic, queueType string) {
	qt := runtime.QueueClassic
	if queueType == "quorum" {
		qt = runtime.QueueQuorum
	}
	srv := runtime.NewServer(brokerURL(), topic, testsvc.FaultOptions[runtime.ServerOption](
		runtime.WithPrefetch(overloadPrefetch), runtime.WithQueueType(qt), runtime.WithQueueLimit(overloadLimit))...)
	testsvc.RegisterArithServer(srv, new(testsvc.ArithImpl))
	go func() {
		time.Sleep(500 * time.Millisecond) // Serve has declared the queues by then
		fmt.Println("serving")
	}()
	fmt.Fprintln(os.Stderr, srv.Serve())
}

// rss returns the resident memory of process pid, in MiB.
func rss(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.Atoi(f[1])
			return float64(kb) / 1024
		}
	}
	return 0
}

// latencies are the durations of calls that succeeded.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *latencies) quantile(q float64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0
	}
	s := slices.Clone(l.d)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// TestOverload: offered three times what the servers can serve for a
// minute, on a topic whose queue is bounded (WithQueueLimit), the system
// keeps at least 90% of its goodput; the calls it takes answer within
// twice their p99 at capacity (four times on a quorum queue); every call it refuses fails within 100 ms
// with ErrOverloaded; no process's memory grows; and once the load stops,
// calls are answered as before within 5 s. For a classic and a quorum
// queue.
func TestOverload(t *testing.T) {
	for _, queueType := range []string{"classic", "quorum"} {
		t.Run(queueType, func(t *testing.T) { overload(t, queueType) })
	}
}

func overload(t *testing.T, queueType string) {
	topic := fmt.Sprintf("overload.%s.%d", queueType, time.Now().UnixNano())
	defer cleanBroker(t, topic)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "AMQPRPC_OVERLOAD_SERVE="+topic+","+queueType)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	if !bufio.NewScanner(out).Scan() {
		t.Fatal("the server process did not start")
	}
	c, err := runtime.Dial(brokerURL(), testsvc.FaultOptions[runtime.ClientOption](runtime.WithTimeout(overloadTimeout))...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitServing(t, c, topic)
	arith := testsvc.NewArithClient(c, topic)
	call := func(id int) (time.Duration, error) {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), overloadTimeout)
		defer cancel()
		got, err := arith.Work(ctx, id, overloadWork)
		if err == nil && got != id {
			err = fmt.Errorf("Work(%d) = %d", id, got)
		}
		return time.Since(start), err
	}

	// At capacity: as many callers as the server runs calls at once.
	var atCapacity latencies
	closedLoop := func(d time.Duration) (n int, errs []error) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		end := time.Now().Add(d)
		for w := range overloadPrefetch {
			wg.Go(func() {
				for i := 0; time.Now().Before(end); i++ {
					took, err := call(w*1_000_000 + i)
					mu.Lock()
					if err != nil {
						errs = append(errs, err)
					} else {
						n++
						atCapacity.add(took)
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return n, errs
	}
	n, errs := closedLoop(5 * time.Second)
	if len(errs) > 0 {
		t.Fatalf("at capacity, %d calls failed: %v", len(errs), errs[0])
	}
	capacity := float64(n) / 5
	p99Capacity := atCapacity.quantile(0.99)

	// Overloaded: calls come at three times that rate, each on its own.
	var accepted latencies
	var mu sync.Mutex
	refused, slowRefusals, failed := 0, 0, map[string]int{}
	var slowest time.Duration
	var wg sync.WaitGroup
	every := time.Duration(float64(time.Second) / (overloadFactor * capacity))
	start := time.Now()
	tick := time.NewTicker(every)
	var clientRSS, serverRSS []float64
	for id := 10_000_000; time.Since(start) < overloadFor; id++ {
		<-tick.C
		if id%int(capacity*overloadFactor) == 0 { // about once a second
			clientRSS, serverRSS = append(clientRSS, rss(os.Getpid())), append(serverRSS, rss(cmd.Process.Pid))
		}
		wg.Go(func() {
			took, err := call(id)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				accepted.add(took)
			case errors.Is(err, runtime.ErrOverloaded):
				refused++
				slowest = max(slowest, took)
				if took > 100*time.Millisecond {
					slowRefusals++
				}
			default:
				failed[testsvc.ErrorKind(err)]++
			}
		})
	}
	tick.Stop()
	wg.Wait()
	elapsed := time.Since(start)
	offered := overloadFactor * capacity * overloadFor.Seconds()
	goodput := float64(len(accepted.d)) / elapsed.Seconds()

	// After: as at capacity, within 5 s.
	var recovered time.Duration
	stopped := time.Now()
	for time.Since(stopped) < 5*time.Second {
		atCapacity = latencies{}
		if n, errs := closedLoop(time.Second); len(errs) == 0 && float64(n) >= 0.9*capacity && atCapacity.quantile(0.99) <= 2*p99Capacity {
			recovered = time.Since(stopped)
			break
		}
	}
	t.Logf("%s queue, limit %d: capacity %.0f calls/s, p99 %v | offered %.0f calls/s for %v: goodput %.0f calls/s (%.0f%%), refused %d (ErrOverloaded; slowest %v), failed otherwise %v; accepted p50 %v, p99 %v | RSS client %.0f→%.0f MiB, server %.0f→%.0f MiB | back to normal after %v",
		queueType, overloadLimit, capacity, p99Capacity.Round(time.Millisecond), offered/overloadFor.Seconds(), overloadFor, goodput, 100*goodput/capacity,
		refused, slowest.Round(time.Millisecond), failed, accepted.quantile(0.5).Round(time.Millisecond), accepted.quantile(0.99).Round(time.Millisecond),
		clientRSS[2], clientRSS[len(clientRSS)-1], serverRSS[2], serverRSS[len(serverRSS)-1], recovered.Round(100*time.Millisecond))
	if goodput < 0.9*capacity {
		t.Errorf("goodput %.0f calls/s; want at least 90%% of the capacity, %.0f", goodput, capacity)
	}
	// A quorum queue refuses through its leader, which the refusals of
	// twice the capacity keep busy on cores the client and the server
	// share: its tail at capacity (26 to 57 ms here, run to run) says less
	// of it under load (75 to 113 ms, before and after issue 21 alike) than
	// a classic queue's does. Four times still fails a queue whose calls
	// wait longer as more are offered.
	factor := 2.0
	if queueType == "quorum" {
		factor = 4
	}
	if p99, most := accepted.quantile(0.99), time.Duration(factor*float64(p99Capacity)); p99 > most {
		t.Errorf("p99 of the calls taken %v; want at most %.0f times that at capacity, %v", p99, factor, most)
	}
	if slowRefusals > 0 {
		t.Errorf("%d of %d refused calls took over 100 ms (slowest %v)", slowRefusals, refused, slowest)
	}
	if len(failed) > 0 {
		t.Errorf("calls failed with other errors than ErrOverloaded: %v", failed)
	}
	if refused == 0 {
		t.Errorf("no call was refused at %d times the capacity", overloadFactor)
	}
	// Memory: what the first seconds took, the rest of the minute does not add to.
	for _, m := range []struct {
		name string
		rss  []float64
	}{{"client", clientRSS}, {"server", serverRSS}} {
		if first, last := m.rss[len(m.rss)/4], m.rss[len(m.rss)-1]; last > first+32 {
			t.Errorf("the %s process grew from %.0f MiB to %.0f MiB over the overload", m.name, first, last)
		}
	}
	if recovered == 0 {
		t.Errorf("calls were not answered as at capacity within 5 s of the load's end")
	}
}
