//go:build cluster

package cluster

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"

	"github.com/amqprpc/amqprpc/internal/faultproxy"
	"github.com/amqprpc/amqprpc/internal/testsvc"
	"github.com/amqprpc/amqprpc/runtime"
)

// Failover targets: from a fault of its node to the first call answered
// through another, for a client and a server, with the defaults and with
// the faster setting README documents (WithHeartbeat(time.Second)).
const (
	failoverDefault = 20 * time.Second
	failoverFast    = 5 * time.Second
	probeTimeout    = time.Second // the deadline of the calls that measure
)

// failover is a client and a server on node 2 of the cluster, reached
// through a proxy, and a client and a server on node 1, on a quorum topic
// of their own whose leader is on node 1, all made with opts.
type failover struct {
	name      string
	topic     string
	servers   []*runtime.Server
	served    []chan error
	near, far *runtime.Client // on node 2, and on node 1
	fleets    []*testsvc.FleetImpl
	dead      <-chan amqp.Delivery // requests the topic's queue dead-lettered
	deadConn  *amqp.Connection
}

func newFailover(t *testing.T, name string, us []string, node2 string, opts ...runtime.Option) *failover {
	t.Helper()
	f := &failover{name: name, topic: fmt.Sprintf("failover.%s.%d", name, time.Now().UnixNano())}
	quiet := runtime.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	dlx := f.topic + ".dead"
	f.dead, f.deadConn = deadLetters(t, us[0], dlx)
	at := map[int][]string{1: {us[0], us[1], us[2]}, 2: {node2, us[2], us[0]}} // each node's URLs, its own first
	for _, i := range []int{1, 2} {                                            // node 1's server first: it declares the queue, whose leader is then there
		name := fmt.Sprint("s", i)
		sopts := []runtime.ServerOption{quiet, runtime.WithURLs(at[i][1:]...), runtime.WithServerName(name), runtime.WithQueueType(runtime.QueueQuorum), runtime.WithDeadLetterExchange(dlx)}
		for _, o := range opts {
			sopts = append(sopts, o)
		}
		srv := runtime.NewServer(at[i][0], f.topic, sopts...)
		testsvc.RegisterArithServer(srv, new(testsvc.ArithImpl))
		fleet := testsvc.NewFleet(name)
		testsvc.RegisterFleetServer(srv, fleet)
		served := make(chan error, 1)
		go func() { served <- srv.Serve() }()
		f.servers, f.served, f.fleets = append(f.servers, srv), append(f.served, served), append(f.fleets, fleet)
		time.Sleep(500 * time.Millisecond)
	}
	for _, i := range []int{2, 1} {
		copts := []runtime.ClientOption{quiet, runtime.WithURLs(at[i][1:]...), runtime.WithTimeout(callTimeout)}
		for _, o := range opts {
			copts = append(copts, o)
		}
		c, err := runtime.Dial(at[i][0], copts...)
		if err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			f.near = c
		} else {
			f.far = c
		}
	}
	for _, server := range []string{"s1", "s2"} {
		waitAnswers(t, f.far, f.topic, server)
	}
	return f
}

func (f *failover) close() {
	f.near.Close()
	f.far.Close()
	for i, srv := range f.servers {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		srv.Shutdown(ctx)
		cancel()
		<-f.served[i]
	}
	f.deadConn.Close()
}

// measured is what one fault cost a failover's load.
type measured struct {
	mu                   sync.Mutex
	fault                time.Time
	client, server       time.Duration // to the first call answered after the fault
	hung                 int
	casts                []int        // confirmed
	expired              map[int]bool // casts dead-lettered as expired: their deadline passed in the queue, or before a server took them
	castErrs, callErrs   map[string]int
	notes                func(id int) int
	calls, ok, castsSent int
}

// lost returns how many confirmed casts no server executed.
func (m *measured) lost() (n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, id := range m.casts {
		if m.notes(id) == 0 && !m.expired[id] {
			n++
		}
	}
	return n
}

func (m *measured) String() string {
	lost := m.lost()
	m.mu.Lock()
	defer m.mu.Unlock()
	return fmt.Sprintf("client answered through another node after %v, server after %v | calls %d, %d ok, errors %s | hung %d | casts %d, %d confirmed, %d expired, %d lost, errors %s",
		m.client.Round(100*time.Millisecond), m.server.Round(100*time.Millisecond), m.calls, m.ok, errString(m.callErrs), m.hung, m.castsSent, len(m.casts), len(m.expired), lost, errString(m.castErrs))
}

// load calls through the client on node 2 (topic calls), calls the
// server on node 2 from node 1, and casts through the client on node 2,
// until stop; it records when each first succeeds after the fault.
func (f *failover) load(m *measured, stop <-chan struct{}) (wait func()) {
	var wg sync.WaitGroup
	var ids int
	var idMu sync.Mutex
	loop := func(call func(ctx context.Context) error, first *time.Duration, errs map[string]int, cast bool) {
		untilStopped(&wg, stop, func() {
			idMu.Lock()
			ids++
			id := ids
			idMu.Unlock()
			start := time.Now()
			timeout := callTimeout
			if first != nil { // a call that measures: the shorter its deadline, the sooner the next one tries
				timeout = probeTimeout
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			err := call(context.WithValue(ctx, idKey{}, id))
			cancel()
			m.mu.Lock()
			if time.Since(start) > callTimeout+hungAfter {
				m.hung++
			}
			if cast {
				m.castsSent++
			} else {
				m.calls++
			}
			switch {
			case err != nil:
				errs[testsvc.ErrorKind(err)]++
			case cast:
				m.casts = append(m.casts, id)
			default:
				m.ok++
			}
			if err == nil && first != nil && !m.fault.IsZero() && start.After(m.fault) && *first == 0 {
				*first = time.Since(m.fault)
			}
			m.mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		})
	}
	near := testsvc.NewArithClient(f.near, f.topic)
	toS2 := testsvc.NewArithClient(f.far, f.topic).ToServer("s2")
	fleet := testsvc.NewFleetClient(f.near, f.topic)
	for range 2 {
		loop(func(ctx context.Context) error { _, err := near.Add(ctx, 1, 2); return err }, &m.client, m.callErrs, false)
		loop(func(ctx context.Context) error { _, err := toS2.Add(ctx, 1, 2); return err }, &m.server, m.callErrs, false)
		loop(func(ctx context.Context) error { return fleet.Note(ctx, ctx.Value(idKey{}).(int)) }, nil, m.castErrs, true)
	}
	return wg.Wait
}

type idKey struct{}

// TestFailover: a node of the cluster fails (frozen, killed, stopped, or
// cut off by the network) under a client and a server connected to it;
// with the defaults, they answer calls through another node within
// failoverDefault of the fault, and with a heartbeat of a second within
// failoverFast; no call hangs and no confirmed cast is lost.
func TestFailover(t *testing.T) {
	us := urls(t)
	for _, fault := range []struct {
		name string
		// inject puts the fault in place; heal ends it, no sooner than
		// hold after it was put in place.
		inject, heal func(t *testing.T, p *faultproxy.Proxy)
		hold         time.Duration
		// fast, when set, is the target of the faster setting instead of
		// failoverFast.
		fast time.Duration
	}{{
		name:   "node frozen (SIGSTOP) for 60s",
		inject: func(t *testing.T, _ *faultproxy.Proxy) { signal(t, 2, syscall.SIGSTOP) },
		heal:   func(t *testing.T, _ *faultproxy.Proxy) { signal(t, 2, syscall.SIGCONT) },
		hold:   60 * time.Second,
		// RabbitMQ before 4.x (Mnesia) lets no node of the cluster declare
		// a queue or bind one until the others have taken the frozen node
		// for down: net_ticktime (10 s in scripts/cluster.sh), after 7.5
		// to 12.5 s. Clients and servers reconnect to another node after
		// a heartbeat and a half, but wait there for that.
		fast: 15 * time.Second,
	}, {
		// Clients and servers reconnect at once, but for a few seconds
		// after a node's death the others still route some requests to
		// the queues it had (a server's own): those wait their deadline.
		name:   "node killed (SIGKILL)",
		inject: func(t *testing.T, _ *faultproxy.Proxy) { signal(t, 2, syscall.SIGKILL) },
		heal:   func(t *testing.T, _ *faultproxy.Proxy) { script(t, "start-node", "2") },
		fast:   10 * time.Second,
	}, {
		name:   "node stopped",
		inject: func(t *testing.T, _ *faultproxy.Proxy) { script(t, "stop-node", "2") },
		heal:   func(t *testing.T, _ *faultproxy.Proxy) { script(t, "start-node", "2") },
		fast:   10 * time.Second,
	}, {
		name:   "network to the node cut (every byte dropped, connections kept) for 30s",
		inject: func(t *testing.T, p *faultproxy.Proxy) { p.Stall() },
		heal:   func(t *testing.T, p *faultproxy.Proxy) { p.Resume() },
		hold:   30 * time.Second,
	}} {
		t.Run(fault.name, func(t *testing.T) {
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
			proxy, err := faultproxy.New(strings.TrimSuffix(strings.TrimPrefix(us[1], "amqp://guest:guest@"), "/"))
			if err != nil {
				t.Fatal(err)
			}
			defer proxy.Close()
			node2 := proxy.URL(us[1])
			settings := []struct {
				name   string
				target time.Duration
				opts   []runtime.Option
			}{
				{"defaults", failoverDefault, nil},
				{"heartbeat 1s", cmp.Or(fault.fast, failoverFast), []runtime.Option{runtime.WithHeartbeat(time.Second)}},
			}
			var envs []*failover
			var ms []*measured
			var waits []func()
			stop := make(chan struct{})
			for _, s := range settings {
				f := newFailover(t, strings.ReplaceAll(s.name, " ", ""), us, node2, s.opts...)
				m := &measured{callErrs: map[string]int{}, castErrs: map[string]int{}, expired: map[int]bool{}}
				m.notes = func(id int) (n int) {
					for _, fl := range f.fleets {
						n += fl.Notes(id)
					}
					return n
				}
				envs, ms, waits = append(envs, f), append(ms, m), append(waits, f.load(m, stop))
			}
			time.Sleep(warmup)
			fault.inject(t, proxy)
			now := time.Now() // the fault is in place: a call that starts now cannot go through it
			for _, m := range ms {
				m.mu.Lock()
				m.fault = now
				m.mu.Unlock()
			}
			for deadline := now.Add(45 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
				done := true
				for _, m := range ms {
					m.mu.Lock()
					done = done && m.client > 0 && m.server > 0
					m.mu.Unlock()
				}
				if done {
					break
				}
			}
			time.Sleep(time.Until(now.Add(fault.hold)))
			fault.heal(t, proxy)
			defer waitCluster(t)        // for the next fault
			time.Sleep(3 * time.Second) // the load goes on over the healed node
			close(stop)
			for _, w := range waits {
				w()
			}
			// A cast the broker delivered to the failed node's server before
			// the fault comes back when the broker drops that consumer, which
			// it may do only once the node is back.
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
				for i, m := range ms {
					expired := expiredNotes(envs[i].dead)
					m.mu.Lock()
					for id := range expired {
						m.expired[id] = true
					}
					m.mu.Unlock()
				}
				if ms[0].lost() == 0 && ms[1].lost() == 0 {
					break
				}
			}
			for i, s := range settings {
				m := ms[i]
				var quarantined uint64 // rejected too: a cast quarantined in its deadline's second would count as expired
				for _, srv := range envs[i].servers {
					quarantined += srv.Stats().Quarantined
				}
				t.Logf("%s, %s: %v | quarantined %d", fault.name, s.name, m, quarantined)
				if m.client == 0 || m.client > s.target {
					t.Errorf("%s: the client on the failed node answered calls after %v; want within %v", s.name, m.client, s.target)
				}
				if m.server == 0 || m.server > s.target {
					t.Errorf("%s: the server on the failed node answered calls after %v; want within %v", s.name, m.server, s.target)
				}
				if m.hung > 0 {
					t.Errorf("%s: %d calls hung past their deadline", s.name, m.hung)
				}
				if lost := m.lost(); lost > 0 {
					t.Errorf("%s: %d confirmed casts were never executed", s.name, lost)
				}
				envs[i].close()
			}
		})
	}
}

// waitCluster waits until the three nodes run as one cluster again: a node
// that the others took for down while it was frozen rejoins them once
// the partition heals (autoheal, in scripts/cluster.sh), restarting.
func waitCluster(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
		out, err := exec.Command("../scripts/cluster.sh", "ctl", "1", "eval", "length(rabbit_nodes:all_running()).").CombinedOutput()
		if err == nil && strings.TrimSpace(string(out)) == "3" {
			return
		}
	}
	t.Fatal("the cluster does not run its three nodes again within 2 minutes")
}
