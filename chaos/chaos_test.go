//go:build chaos

package chaos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"

	"github.com/amqprpc/amqprpc/internal/faultproxy"
	"github.com/amqprpc/amqprpc/internal/hostile"
	"github.com/amqprpc/amqprpc/internal/testsvc"
	"github.com/amqprpc/amqprpc/internal/wire"
	"github.com/amqprpc/amqprpc/runtime"
)

// The load: workers call Work(id, workTime) in a loop, each call with a
// deadline of callTimeout. A call that has not ended hungAfter past its
// deadline is hung.
const (
	workers     = 8
	workTime    = 20 * time.Millisecond
	callTimeout = 2 * time.Second
	hungAfter   = time.Second
	warmup      = time.Second
	steady      = time.Second      // of successes after recovery before the load stops
	maxAfter    = 20 * time.Second // the most the load runs after the fault ends
)

func brokerURL() string {
	if u := os.Getenv("AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

// TestMain also runs this test binary as a server process, for the
// SIGKILL fault: AMQPRPC_CHAOS_SERVE=topic,name.
func TestMain(m *testing.M) {
	if spec := os.Getenv("AMQPRPC_CHAOS_SERVE"); spec != "" {
		topic, name, _ := strings.Cut(spec, ",")
		serveProcess(topic, name)
		return
	}
	if spec := os.Getenv("AMQPRPC_OVERLOAD_SERVE"); spec != "" {
		topic, queueType, _ := strings.Cut(spec, ",")
		serveOverloaded(topic, queueType)
		return
	}
	if os.Getenv("AMQPRPC_CLUSTER_DIR") == "" {
		fmt.Fprintln(os.Stderr, "chaos: the fault tests break their broker: run them with make chaos, on a node of their own")
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// printingArith reports each completed Work on stdout, for the parent
// process to count executions across processes.
type printingArith struct {
	*testsvc.ArithImpl
	mu sync.Mutex
}

func (p *printingArith) Work(id int, d time.Duration) int {
	p.ArithImpl.Work(id, d)
	p.mu.Lock()
	fmt.Printf("done %d\n", id)
	p.mu.Unlock()
	return id
}

func serveProcess(topic, name string) {
	srv := runtime.NewServer(brokerURL(), topic, testsvc.FaultOptions[runtime.ServerOption](runtime.WithServerName(name), runtime.WithDeduplication(10000))...)
	testsvc.RegisterArithServer(srv, &printingArith{ArithImpl: new(testsvc.ArithImpl)})
	go func() {
		time.Sleep(500 * time.Millisecond) // Serve has declared the queues by then
		fmt.Println("serving")
	}()
	fmt.Fprintln(os.Stderr, srv.Serve())
}

// report is what a fault cost the load.
type report struct {
	attempted, succeeded atomic.Int64
	mu                   sync.Mutex
	failed               map[string]int // by kind
	examples             map[string]string
	hung                 int
	twice                int
	recover              time.Duration
}

func (r *report) fail(kind string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed[kind]++
	if _, ok := r.examples[kind]; !ok {
		r.examples[kind] = err.Error()
	}
}

func (r *report) String() string {
	kinds := make([]string, 0, len(r.failed))
	for k, n := range r.failed {
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, n))
	}
	sort.Strings(kinds)
	if len(kinds) == 0 {
		kinds = []string{"none"}
	}
	return fmt.Sprintf("attempted %d, succeeded %d, failed %s, hung %d, executed twice %d, recovered in %v",
		r.attempted.Load(), r.succeeded.Load(), strings.Join(kinds, " "), r.hung, r.twice, r.recover.Round(time.Millisecond))
}

// load calls Work from workers goroutines until stop, numbering the jobs.
type load struct {
	arith   *testsvc.ArithClient
	r       *report
	nextID  atomic.Int64
	healed  atomic.Int64 // UnixNano when the fault ended, 0 before
	firstOK atomic.Int64 // UnixNano of the end of the first success that started after healed
	lastBad atomic.Int64 // UnixNano of the last failure
}

func (l *load) run(stop <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		select {
		case <-stop:
			return
		default:
		}
		id := int(l.nextID.Add(1))
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		got, err := l.arith.Work(ctx, id, workTime)
		cancel()
		l.r.attempted.Add(1)
		if time.Since(start) > callTimeout+hungAfter {
			l.r.mu.Lock()
			l.r.hung++
			l.r.mu.Unlock()
		}
		switch {
		case err == nil && got == id:
			l.r.succeeded.Add(1)
			if h := l.healed.Load(); h != 0 && start.UnixNano() >= h {
				l.firstOK.CompareAndSwap(0, time.Now().UnixNano())
			}
		case err == nil:
			l.r.fail("wrong_result", fmt.Errorf("Work(%d) = %d", id, got))
			l.lastBad.Store(time.Now().UnixNano())
		default:
			l.r.fail(testsvc.ErrorKind(err), err)
			l.lastBad.Store(time.Now().UnixNano())
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, runtime.ErrReconnecting) {
				continue
			}
			time.Sleep(10 * time.Millisecond) // a fast failure: do not spin
		}
	}
}

// fault is one fault scenario.
type fault struct {
	name      string
	servers   int  // how many servers; deduplication is per server, so 1 unless the fault needs 2
	viaProxy  bool // servers and client reach the broker through a fault proxy
	processes bool // servers run as separate processes
	// inject injects the fault and returns when it has ended.
	inject func(t *testing.T, e *env)
	// check asserts what this fault must not cost, beyond what every
	// fault must not: hung calls.
	check func(t *testing.T, r *report)
}

// env is what a scenario runs against.
type env struct {
	topic   string
	url     string
	proxy   *faultproxy.Proxy
	servers []*runtime.Server
	impls   []*testsvc.ArithImpl
	procs   []*serverProc
}

type serverProc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	done map[int]int
}

func TestFaults(t *testing.T) {
	watermark := strings.TrimSpace(rabbitmqctl(t, "eval", "vm_memory_monitor:get_vm_memory_high_watermark()."))
	for _, f := range []fault{{
		name:    "all connections closed by the broker",
		servers: 1,
		inject: func(t *testing.T, e *env) {
			rabbitmqctl(t, "close_all_connections", "amqprpc chaos test")
		},
		check: noneTwice,
	}, {
		name:    "broker app stopped and started",
		servers: 1,
		inject: func(t *testing.T, e *env) {
			rabbitmqctl(t, "stop_app")
			time.Sleep(2 * time.Second)
			rabbitmqctl(t, "start_app")
		},
		check: noneTwice,
	}, {
		name:     "link cut by a proxy",
		servers:  1,
		viaProxy: true,
		inject: func(t *testing.T, e *env) {
			e.proxy.Refuse(true)
			e.proxy.Cut()
			time.Sleep(time.Second)
			e.proxy.Refuse(false)
		},
		check: noneTwice,
	}, {
		name:     "link stalled by a proxy",
		servers:  1,
		viaProxy: true,
		inject: func(t *testing.T, e *env) {
			e.proxy.Stall()
			time.Sleep(5 * time.Second) // heartbeats notice after 3s
			e.proxy.Resume()
		},
		check: noneTwice,
	}, {
		name:      "server killed with SIGKILL mid-request, a second server running",
		servers:   2,
		processes: true,
		inject: func(t *testing.T, e *env) {
			if err := e.procs[0].cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		},
		check: func(t *testing.T, r *report) {
			// The requests the killed server had taken go to the other one:
			// no call fails for it. Deduplication is per process, so a
			// request killed between its method's end and its ack runs
			// again: those are reported, bounded by the requests in flight.
			if n := r.attempted.Load() - r.succeeded.Load(); n > 0 {
				t.Errorf("%d calls failed though a second server was running", n)
			}
			if r.twice > workers {
				t.Errorf("%d requests ran twice; at most the %d in flight could", r.twice, workers)
			}
		},
	}, {
		name:    "server shut down gracefully under load",
		servers: 2,
		inject: func(t *testing.T, e *env) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := e.servers[0].Shutdown(ctx); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
		},
		check: func(t *testing.T, r *report) {
			noneTwice(t, r)
			if n := r.attempted.Load() - r.succeeded.Load(); n > 0 {
				t.Errorf("%d calls failed while a server shut down gracefully beside another", n)
			}
		},
	}, {
		name:    "broker blocks publishers (memory alarm)",
		servers: 1,
		// The broker blocks a connection when it publishes during the
		// alarm: calls published before the client is told end at their
		// deadline; calls made after wait and fail with ErrBlocked. The
		// alarm lasts several call timeouts, so that the latter come.
		inject: func(t *testing.T, e *env) {
			rabbitmqctl(t, "set_vm_memory_high_watermark", "0.0000001")
			time.Sleep(3*callTimeout + time.Second)
			rabbitmqctl(t, "set_vm_memory_high_watermark", watermark)
		},
		check: func(t *testing.T, r *report) {
			noneTwice(t, r)
			if r.failed["blocked"] == 0 {
				t.Errorf("no call failed with ErrBlocked during the alarm")
			}
			for kind, n := range r.failed {
				if kind != "blocked" && kind != "deadline" {
					t.Errorf("%d calls failed with %s during the alarm; want ErrBlocked or their deadline", n, kind)
				}
			}
		},
	}, {
		name:    "hostile peers publish to the topic under load",
		servers: 2,
		// Each message that once cost a server its connection, again and
		// again: now each costs at most itself, and the load nothing.
		inject: func(t *testing.T, e *env) {
			conn, err := hostile.Dial(e.url, hostile.LongLongU(hostile.BigHeader))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ch, err := conn.Channel()
			if err != nil {
				t.Fatal(err)
			}
			q, err := ch.QueueDeclare("", false, true, true, false, nil)
			if err != nil {
				t.Fatal(err)
			}
			const rounds = 5
			for range rounds {
				for name, pub := range hostile.Messages(q.Name) {
					if err := ch.Publish(runtime.DefaultExchange, e.topic, false, false, pub); err != nil {
						t.Fatalf("publish %s: %v", name, err)
					}
				}
				time.Sleep(200 * time.Millisecond)
			}
			var st runtime.ServerStats
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				st = runtime.ServerStats{}
				for _, srv := range e.servers {
					s := srv.Stats()
					st.Malformed += s.Malformed
					st.Unanswerable += s.Unanswerable
					st.Quarantined += s.Quarantined
				}
				if st.Unanswerable >= rounds*hostile.Unanswerable {
					break
				}
			}
			if st != (runtime.ServerStats{Malformed: rounds * hostile.Malformed, Unanswerable: rounds * hostile.Unanswerable}) {
				t.Errorf("servers' stats %+v; want each hostile message rejected once", st)
			}
		},
		check: func(t *testing.T, r *report) {
			noneTwice(t, r)
			if n := r.attempted.Load() - r.succeeded.Load(); n > 0 {
				t.Errorf("%d calls failed while hostile peers published", n)
			}
		},
	}} {
		t.Run(f.name, func(t *testing.T) {
			r := runFault(t, f)
			t.Logf("%s: %v", f.name, r)
			for kind, example := range r.examples {
				t.Logf("  %s, e.g.: %s", kind, example)
			}
			if r.hung > 0 {
				t.Errorf("%d calls hung: each must end by its deadline", r.hung)
			}
			if r.recover <= 0 {
				t.Errorf("no call succeeded after the fault ended")
			}
			f.check(t, r)
		})
	}
}

func noneTwice(t *testing.T, r *report) {
	t.Helper()
	if r.twice > 0 {
		t.Errorf("%d requests ran twice on servers with deduplication", r.twice)
	}
}

// runFault runs the load, injects f, waits for recovery and returns what
// happened. It leaves no goroutine, process, queue or exchange behind.
func runFault(t *testing.T, f fault) *report {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	e := &env{topic: fmt.Sprintf("chaos.%d", time.Now().UnixNano()), url: brokerURL()}
	defer cleanBroker(t, e.topic)
	if f.viaProxy {
		u, _ := url.Parse(brokerURL())
		host := u.Host
		if u.Port() == "" {
			host += ":5672"
		}
		p, err := faultproxy.New(host)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		e.proxy, e.url = p, p.URL(brokerURL())
	}
	for _, name := range []string{"s1", "s2"}[:f.servers] {
		if f.processes {
			e.procs = append(e.procs, startProcess(t, e.topic, name))
			continue
		}
		impl := new(testsvc.ArithImpl)
		srv := runtime.NewServer(e.url, e.topic, testsvc.FaultOptions[runtime.ServerOption](runtime.WithServerName(name), runtime.WithDeduplication(10000))...)
		testsvc.RegisterArithServer(srv, impl)
		served := make(chan error, 1)
		go func() { served <- srv.Serve() }()
		defer func(srv *runtime.Server) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			srv.Shutdown(ctx)
			<-served
		}(srv)
		e.servers, e.impls = append(e.servers, srv), append(e.impls, impl)
	}
	client, err := runtime.Dial(e.url, testsvc.FaultOptions[runtime.ClientOption](runtime.WithTimeout(callTimeout))...)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	waitServing(t, client, e.topic)

	r := &report{failed: make(map[string]int), examples: make(map[string]string)}
	l := &load{arith: testsvc.NewArithClient(client, e.topic), r: r}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go l.run(stop, &wg)
	}
	time.Sleep(warmup)
	f.inject(t, e)
	healed := time.Now()
	l.healed.Store(healed.UnixNano())

	// Run on until a second of successes since the last failure, or maxAfter.
	for time.Since(healed) < maxAfter {
		time.Sleep(100 * time.Millisecond)
		last := time.Unix(0, l.lastBad.Load())
		if l.firstOK.Load() != 0 && time.Since(last) > steady {
			break
		}
	}
	close(stop)
	stopped := make(chan struct{})
	go func() { wg.Wait(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(callTimeout + hungAfter):
		r.hung += workers // a worker still in a call past its deadline
		t.Errorf("workers still calling %v after the load stopped", callTimeout+hungAfter)
	}
	if ok := l.firstOK.Load(); ok != 0 {
		r.recover = time.Unix(0, ok).Sub(healed)
	}
	r.twice = executedTwice(e, int(l.nextID.Load()))
	return r
}

// executedTwice counts the jobs that completed more than once, on any
// server.
func executedTwice(e *env, maxID int) int {
	counts := make(map[int]int)
	for _, impl := range e.impls {
		for id := 1; id <= maxID; id++ {
			counts[id] += impl.Executions(id)
		}
	}
	for _, p := range e.procs {
		p.cmd.Process.Kill()
		p.cmd.Wait()
		p.mu.Lock()
		for id, n := range p.done {
			counts[id] += n
		}
		p.mu.Unlock()
	}
	twice := 0
	for _, n := range counts {
		if n > 1 {
			twice++
		}
	}
	return twice
}

// startProcess runs this test binary as a server process of topic and
// waits until it serves.
func startProcess(t *testing.T, topic, name string) *serverProc {
	t.Helper()
	p := &serverProc{done: make(map[int]int)}
	p.cmd = exec.Command(os.Args[0], "-test.run=^$")
	p.cmd.Env = append(os.Environ(), "AMQPRPC_CHAOS_SERVE="+topic+","+name)
	p.cmd.Stderr = os.Stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	serving := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if line == "serving" {
				close(serving)
				continue
			}
			if id, err := strconv.Atoi(strings.TrimPrefix(line, "done ")); err == nil {
				p.mu.Lock()
				p.done[id]++
				p.mu.Unlock()
			}
		}
	}()
	select {
	case <-serving:
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		t.Fatalf("server process %s did not start serving", name)
	}
	return p
}

// waitServing waits until a server answers on topic.
func waitServing(t *testing.T, c *runtime.Client, topic string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := testsvc.NewArithClient(c, topic).Add(ctx, 1, 1)
		cancel()
		if err == nil {
			return
		}
	}
	t.Fatalf("no server answers on %s", topic)
}

func rabbitmqctl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("../scripts/cluster.sh", append([]string{"ctl", "1", "-q"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// cleanBroker deletes what a scenario declared, so that the broker is left
// as it was found.
func cleanBroker(t *testing.T, topic string) {
	conn, err := amqp.Dial(brokerURL())
	if err != nil {
		t.Errorf("clean the broker: %v", err)
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Errorf("clean the broker: %v", err)
		return
	}
	ch.QueueDelete(topic, false, false, false)
	ch.ExchangeDelete(wire.FanoutExchange(runtime.DefaultExchange, topic), false, false)
}
