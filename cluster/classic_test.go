//go:build cluster

package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/amqprpc/amqprpc/internal/testsvc"
	"github.com/amqprpc/amqprpc/runtime"
)

// consumers returns how many consumers the queue named topic has, as node
// i sees it.
func consumers(t *testing.T, i int, topic string) int {
	t.Helper()
	n := 0
	for _, line := range strings.Split(script(t, "ctl", strconv.Itoa(i), "list_consumers", "-q", "queue_name"), "\n") {
		if strings.TrimSpace(line) == topic {
			n++
		}
	}
	return n
}

// TestClassicQueueNodeLost: a topic on the default queue, a classic one,
// lives on node 1, with its two servers on nodes 2 and 3. While node 1 is
// away, stopped or killed, calls fail at once with ErrNoServer saying that
// the queue's node is down; once it is back, both servers consume the
// queue again within 5 s, with no process restarted, and calls are
// answered.
func TestClassicQueueNodeLost(t *testing.T) {
	us := urls(t)
	for _, fault := range []struct {
		name         string
		inject, heal func(t *testing.T)
	}{{
		name:   "stopped for 20s",
		inject: func(t *testing.T) { script(t, "stop-node", "1") },
		heal:   func(t *testing.T) { script(t, "start-node", "1") },
	}, {
		name:   "killed (SIGKILL) for 20s",
		inject: func(t *testing.T) { signal(t, 1, syscall.SIGKILL) },
		heal:   func(t *testing.T) { script(t, "start-node", "1") },
	}} {
		t.Run(fault.name, func(t *testing.T) {
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
			topic := fmt.Sprintf("classic.%d", time.Now().UnixNano())
			quiet := runtime.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
			// The queue is declared on node 1, by a server there that leaves.
			first := runtime.NewServer(us[0], topic, quiet, runtime.WithServerName("s1"))
			testsvc.RegisterArithServer(first, new(testsvc.ArithImpl))
			firstDone := make(chan error, 1)
			go func() { firstDone <- first.Serve() }()
			c, err := runtime.Dial(us[1], quiet, runtime.WithURLs(us[2]), runtime.WithTimeout(callTimeout))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			waitAnswers(t, c, topic, "s1")
			first.Shutdown(context.Background())
			<-firstDone
			var servers []*runtime.Server
			var served []chan error
			for i := 2; i <= 3; i++ {
				srv := runtime.NewServer(us[i-1], topic, quiet, runtime.WithServerName(fmt.Sprint("s", i)), runtime.WithURLs(us[i%3]))
				testsvc.RegisterArithServer(srv, new(testsvc.ArithImpl))
				done := make(chan error, 1)
				go func() { done <- srv.Serve() }()
				servers, served = append(servers, srv), append(served, done)
				waitAnswers(t, c, topic, fmt.Sprint("s", i))
			}
			defer func() {
				for i, srv := range servers {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					srv.Shutdown(ctx)
					cancel()
					<-served[i]
				}
			}()

			arith := testsvc.NewArithClient(c, topic)
			var mu sync.Mutex
			errs, saysDown, hung := map[string]int{}, 0, 0
			var back, firstOK time.Time
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for range 4 {
				untilStopped(&wg, stop, func() {
					start := time.Now()
					ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
					_, err := arith.Add(ctx, 1, 2)
					cancel()
					mu.Lock()
					if time.Since(start) > callTimeout+hungAfter {
						hung++
					}
					switch {
					case err != nil && back.IsZero():
						errs[testsvc.ErrorKind(err)]++
						if errors.Is(err, runtime.ErrNoServer) && strings.Contains(err.Error(), "down") {
							saysDown++
						}
					case err == nil && !back.IsZero() && start.After(back) && firstOK.IsZero():
						firstOK = time.Now()
					}
					mu.Unlock()
					time.Sleep(10 * time.Millisecond)
				})
			}
			time.Sleep(time.Second)
			before := consumers(t, 2, topic)
			fault.inject(t)
			time.Sleep(3 * time.Second)
			during := consumers(t, 2, topic)
			time.Sleep(17 * time.Second)
			fault.heal(t)
			mu.Lock()
			back = time.Now()
			mu.Unlock()
			var after int
			var consuming time.Duration
			for time.Since(back) < 10*time.Second {
				if after = consumers(t, 2, topic); after == 2 {
					consuming = time.Since(back)
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			time.Sleep(2 * time.Second)
			close(stop)
			wg.Wait()
			mu.Lock()
			defer mu.Unlock()
			answered := firstOK.Sub(back)
			if firstOK.IsZero() {
				answered = 0
			}
			t.Logf("queue's node %s: consumers before %d, during %d, after %d (both within %v of its return) | calls while it was away failed: %s, %d of them ErrNoServer saying the queue's node is down | first call answered %v after its return | hung %d",
				fault.name, before, during, after, consuming.Round(100*time.Millisecond), errString(errs), saysDown, answered.Round(100*time.Millisecond), hung)
			if before != 2 || during != 0 {
				t.Errorf("consumers before %d, during %d; want 2, 0", before, during)
			}
			if after != 2 || consuming > 5*time.Second {
				t.Errorf("%d servers consume the queue %v after its node came back; want 2 within 5s", after, consuming)
			}
			if firstOK.IsZero() || answered > 5*time.Second {
				t.Errorf("the first call was answered %v after the queue's node came back; want within 5s", answered)
			}
			// The client asks the broker why, once a second, and a call
			// returned before the first answer fails with ErrNoServer alone.
			if errs["no_server"] == 0 || errs["no_server"]-saysDown > 8 {
				t.Errorf("%d calls failed with ErrNoServer while the queue's node was away, %d of them saying the node is down; want all but the first few", errs["no_server"], saysDown)
			}
			if n := errs["deadline"] + errs["connection_lost"]; n > 4 {
				t.Errorf("%d calls ended at their deadline or with the connection; want at most those in flight at the fault, 4", n)
			}
			if hung > 0 {
				t.Errorf("%d calls hung", hung)
			}
		})
	}
}
