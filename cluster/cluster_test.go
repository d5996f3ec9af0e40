//go:build cluster

// Package cluster tests amqprpc on a three-node RabbitMQ cluster that loses
// nodes under load: make cluster-test starts the nodes
// (scripts/cluster.sh), apart from any broker the machine runs, and stops
// them after.
package cluster

import (
	"context"
	"encoding/json"
	"fmt"
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

	"github.com/amqprpc/amqprpc/internal/testsvc"
	"github.com/amqprpc/amqprpc/internal/wire"
	"github.com/amqprpc/amqprpc/runtime"
)

// The load: callers call Work(id, workTime), casters cast Note(id), and a
// gatherer gathers Total, in loops, each with a deadline of callTimeout. A
// request that has not ended hungAfter past its deadline is hung.
const (
	callers     = 6
	casters     = 2
	workTime    = 20 * time.Millisecond
	callTimeout = 2 * time.Second
	hungAfter   = time.Second
	warmup      = 2 * time.Second
	steady      = 2 * time.Second  // of successes after recovery before the load stops
	maxAfter    = 45 * time.Second // the most the load runs after the fault ends
)

// script runs scripts/cluster.sh with args and returns its output.
func script(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("../scripts/cluster.sh", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("cluster.sh %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func urls(t *testing.T) []string {
	t.Helper()
	us := strings.Fields(script(t, "urls"))
	if len(us) != 3 {
		t.Fatalf("the cluster has %d nodes; make cluster-test starts 3", len(us))
	}
	return us
}

// from returns the options that connect first to node i of us, then to
// the others in turn, as a client or server configured with the cluster's
// URLs does.
func from(us []string, i int) (string, runtime.Option) {
	var rest []string
	for j := 1; j < len(us); j++ {
		rest = append(rest, us[(i+j)%len(us)])
	}
	return us[i], runtime.WithURLs(rest...)
}

// report is what a fault cost the load.
type report struct {
	mu                       sync.Mutex
	calls, callsOK           int
	callErrs                 map[string]int
	casts, castsConfirmed    int
	castErrs                 map[string]int
	gathers, gathersOK       int
	gatherErrs               map[string]int
	hung                     int
	lost, expired, twice     int
	losses                   int // connections lost at once: nodes stopped, killed or paused
	recover                  time.Duration
	healed, firstOK, lastBad time.Time
	lastOK                   time.Time     // the end of the last call that succeeded
	gap                      time.Duration // the longest time without a call succeeding
}

// done records a request that ended after start, with err.
func (r *report) done(errs map[string]int, start time.Time, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(start) > callTimeout+hungAfter {
		r.hung++
	}
	if err != nil {
		errs[testsvc.ErrorKind(err)]++
		r.lastBad = time.Now()
		return
	}
	if !r.healed.IsZero() && start.After(r.healed) && r.firstOK.IsZero() {
		r.firstOK = time.Now()
	}
}

// answered records a call that succeeded, for the longest time without one.
func (r *report) answered() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.lastOK.IsZero() {
		r.gap = max(r.gap, time.Since(r.lastOK))
	}
	r.lastOK = time.Now()
}

func errString(m map[string]int) string {
	var ks []string
	for k, n := range m {
		ks = append(ks, fmt.Sprintf("%s=%d", k, n))
	}
	sort.Strings(ks)
	if len(ks) == 0 {
		return "none"
	}
	return strings.Join(ks, " ")
}

func (r *report) String() string {
	return fmt.Sprintf("calls %d: %d ok, errors %s | casts %d: %d confirmed, errors %s, %d confirmed expired, %d confirmed lost | gathers %d: %d ok, errors %s | hung %d | executed twice %d | longest without a call answered %v | recovered in %v",
		r.calls, r.callsOK, errString(r.callErrs), r.casts, r.castsConfirmed, errString(r.castErrs), r.expired, r.lost,
		r.gathers, r.gathersOK, errString(r.gatherErrs), r.hung, r.twice, r.gap.Round(time.Millisecond), r.recover.Round(time.Millisecond))
}

// env is one fault's servers and clients, on a topic of its own.
type env struct {
	topic   string
	dead    <-chan amqp.Delivery // requests the topic's queue dead-lettered
	deadCh  *amqp.Connection
	urls    []string
	servers []*runtime.Server
	ariths  []*testsvc.ArithImpl
	fleets  []*testsvc.FleetImpl
	served  []chan error
	clients []*runtime.Client
}

func start(t *testing.T) *env {
	t.Helper()
	e := &env{topic: fmt.Sprintf("cluster.%d", time.Now().UnixNano()), urls: urls(t)}
	dlx := e.topic + ".dead"
	e.dead, e.deadCh = deadLetters(t, e.urls[0], dlx)
	for i := range 3 { // a server on each node
		url, others := from(e.urls, i)
		name := fmt.Sprint("s", i+1)
		srv := runtime.NewServer(url, e.topic, testsvc.FaultOptions[runtime.ServerOption](others, runtime.WithServerName(name),
			runtime.WithQueueType(runtime.QueueQuorum), runtime.WithDeadLetterExchange(dlx), runtime.WithDeduplication(10000))...)
		arith, fleet := new(testsvc.ArithImpl), testsvc.NewFleet(name)
		testsvc.RegisterArithServer(srv, arith)
		testsvc.RegisterFleetServer(srv, fleet)
		served := make(chan error, 1)
		go func() { served <- srv.Serve() }()
		e.servers, e.ariths, e.fleets, e.served = append(e.servers, srv), append(e.ariths, arith), append(e.fleets, fleet), append(e.served, served)
	}
	for i := range 3 { // a client on each node
		url, others := from(e.urls, i)
		c, err := runtime.Dial(url, testsvc.FaultOptions[runtime.ClientOption](others, runtime.WithTimeout(callTimeout))...)
		if err != nil {
			t.Fatal(err)
		}
		e.clients = append(e.clients, c)
	}
	// Every server answers a call to it alone: its queues are bound, the
	// one on the fanout exchange too.
	for i := range e.servers {
		waitAnswers(t, e.clients[0], e.topic, fmt.Sprint("s", i+1))
	}
	return e
}

// waitAnswers waits until the server named server answers on topic.
func waitAnswers(t *testing.T, c *runtime.Client, topic, server string) {
	t.Helper()
	arith := testsvc.NewArithClient(c, topic).ToServer(server)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := arith.Add(ctx, 1, 1)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server %s does not answer on %s: %v", server, topic, err)
		}
	}
}

// untilStopped runs f again and again in a goroutine of wg until stop is
// closed.
func untilStopped(wg *sync.WaitGroup, stop <-chan struct{}, f func()) {
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			f()
		}
	})
}

func (e *env) stop(t *testing.T) {
	for _, c := range e.clients {
		c.Close()
	}
	for i, srv := range e.servers {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		srv.Shutdown(ctx)
		cancel()
		<-e.served[i]
	}
	if conn, err := amqp.Dial(e.urls[0]); err == nil {
		if ch, err := conn.Channel(); err == nil {
			ch.QueueDelete(e.topic, false, false, false)
			ch.ExchangeDelete(wire.FanoutExchange(runtime.DefaultExchange, e.topic), false, false)
			ch.ExchangeDelete(e.topic+".dead", false, false)
		}
		conn.Close()
	}
	e.deadCh.Close()
}

// deadLetters declares the dead-letter exchange dlx, durable as the
// cluster can lose nodes, and a quorum queue for it, and returns what it
// receives.
func deadLetters(t *testing.T, url, dlx string) (<-chan amqp.Delivery, *amqp.Connection) {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := conn.Channel()
	if err == nil {
		err = ch.ExchangeDeclare(dlx, "fanout", true, false, false, false, nil)
	}
	if err == nil {
		_, err = ch.QueueDeclare(dlx, true, false, false, false, amqp.Table{"x-queue-type": "quorum"})
	}
	if err == nil {
		err = ch.QueueBind(dlx, "", dlx, false, nil)
	}
	var dead <-chan amqp.Delivery
	if err == nil {
		dead, err = ch.Consume(dlx, "", true, false, false, false, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if conn, err := amqp.Dial(url); err == nil {
			if ch, err := conn.Channel(); err == nil {
				ch.QueueDelete(dlx, false, false, false)
			}
			conn.Close()
		}
	})
	return dead, conn
}

// expiredNotes returns the ids of the Note casts among dead that expired:
// the broker dead-lettered them as expired in the queue, or a server that
// took them past their deadline rejected them.
func expiredNotes(dead <-chan amqp.Delivery) map[int]bool {
	ids := map[int]bool{}
	for {
		select {
		case d, ok := <-dead:
			if !ok {
				return ids
			}
			var req struct {
				Method string
				Args   struct{ ID int }
			}
			if json.Unmarshal(d.Body, &req) == nil && req.Method == "note" && expired(d) {
				ids[req.Args.ID] = true
			}
		case <-time.After(500 * time.Millisecond):
			return ids
		}
	}
}

// expired reports whether d was dead-lettered as expired in its queue, or
// rejected by a server at or after its deadline (x-death's time is in
// whole seconds).
func expired(d amqp.Delivery) bool {
	deaths, _ := d.Headers["x-death"].([]any)
	if len(deaths) == 0 {
		return false
	}
	death, _ := deaths[0].(amqp.Table)
	at, _ := death["time"].(time.Time)
	deadline, ok := d.Headers[wire.DeadlineHeader].(int64)
	switch death["reason"] {
	case "expired":
		return true
	case "rejected":
		return ok && !at.Add(time.Second).Before(time.UnixMilli(deadline))
	}
	return false
}

// load runs the callers, casters and the gatherer until stop.
func (e *env) load(r *report, stop <-chan struct{}) (wait func() (calls int, confirmed []int)) {
	var wg sync.WaitGroup
	var callIDs, castIDs atomic.Int64
	confirmed := make(chan int, 1<<16)
	loop := func(f func()) { untilStopped(&wg, stop, f) }
	for i := range callers {
		arith := testsvc.NewArithClient(e.clients[i%len(e.clients)], e.topic)
		loop(func() {
			id, start := int(callIDs.Add(1)), time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
			got, err := arith.Work(ctx, id, workTime)
			cancel()
			if err == nil && got != id {
				err = fmt.Errorf("Work(%d) = %d", id, got)
			}
			r.mu.Lock()
			r.calls++
			if err == nil {
				r.callsOK++
			}
			r.mu.Unlock()
			if err == nil {
				r.answered()
			}
			r.done(r.callErrs, start, err)
		})
	}
	for i := range casters {
		fleet := testsvc.NewFleetClient(e.clients[(i+1)%len(e.clients)], e.topic)
		loop(func() {
			id, start := int(castIDs.Add(1)), time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
			err := fleet.Note(ctx, id)
			cancel()
			r.mu.Lock()
			r.casts++
			if err == nil {
				r.castsConfirmed++
				confirmed <- id
			}
			r.mu.Unlock()
			r.done(r.castErrs, start, err)
			time.Sleep(10 * time.Millisecond)
		})
	}
	fleet := testsvc.NewFleetClient(e.clients[2], e.topic)
	loop(func() {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		replies, err := fleet.GatherTotal(ctx, 3)
		cancel()
		if err == nil && len(replies) != 3 {
			err = fmt.Errorf("%d replies", len(replies))
		}
		r.mu.Lock()
		r.gathers++
		if err == nil {
			r.gathersOK++
		}
		r.mu.Unlock()
		r.done(r.gatherErrs, start, err)
		time.Sleep(50 * time.Millisecond)
	})
	return func() (int, []int) {
		wg.Wait()
		close(confirmed)
		var ids []int
		for id := range confirmed {
			ids = append(ids, id)
		}
		return int(callIDs.Load()), ids
	}
}

// fault is a failure of the cluster to inject under load.
type fault struct {
	name   string
	losses int // nodes lost one after the other
	inject func(t *testing.T, e *env)
}

func TestNodeLoss(t *testing.T) {
	for _, f := range []fault{{
		name:   "the node of the topic queue's leader stopped, then started",
		losses: 1,
		inject: func(t *testing.T, e *env) {
			i := leader(t, e.topic)
			t.Logf("the leader is on node %d", i)
			script(t, "stop-node", strconv.Itoa(i))
			time.Sleep(3 * time.Second)
			script(t, "start-node", strconv.Itoa(i))
		},
	}, {
		name:   "a node with clients and servers on it killed (SIGKILL), then started",
		losses: 1,
		inject: func(t *testing.T, e *env) {
			signal(t, 1, syscall.SIGKILL)
			time.Sleep(3 * time.Second)
			script(t, "start-node", "1")
		},
	}, {
		name:   "a node paused (SIGSTOP) for longer than the call timeout, then resumed",
		losses: 1,
		inject: func(t *testing.T, e *env) {
			signal(t, 2, syscall.SIGSTOP)
			time.Sleep(2*callTimeout + time.Second)
			signal(t, 2, syscall.SIGCONT)
		},
	}, {
		name:   "a rolling restart, one node at a time",
		losses: 3,
		inject: func(t *testing.T, e *env) {
			for i := 1; i <= 3; i++ {
				script(t, "stop-node", strconv.Itoa(i))
				script(t, "start-node", strconv.Itoa(i))
			}
		},
	}} {
		t.Run(f.name, func(t *testing.T) {
			r := run(t, f)
			t.Logf("%s: %v", f.name, r)
			if r.hung > 0 {
				t.Errorf("%d requests hung: each must end by its deadline", r.hung)
			}
			if r.lost > 0 {
				t.Errorf("%d confirmed casts were never executed", r.lost)
			}
			if r.recover <= 0 {
				t.Errorf("no request succeeded after the fault ended")
			}
			// At least once: a request in flight on a lost connection runs
			// again, at most those of each loss.
			if most := r.losses * (callers + casters); r.twice > most {
				t.Errorf("%d requests ran twice; at most those in flight at %d losses (%d) may", r.twice, r.losses, most)
			}
			for kind := range r.callErrs {
				if strings.HasPrefix(kind, "other") || strings.HasPrefix(kind, "remote") {
					t.Errorf("calls failed with an undefined error: %s", kind)
				}
			}
		})
	}
}

// run runs the load on a fresh topic, injects f, waits for recovery and
// counts what happened.
func run(t *testing.T, f fault) *report {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	e := start(t)
	r := &report{callErrs: map[string]int{}, castErrs: map[string]int{}, gatherErrs: map[string]int{}}
	stop := make(chan struct{})
	wait := e.load(r, stop)
	time.Sleep(warmup)
	f.inject(t, e)
	r.mu.Lock()
	r.healed = time.Now()
	r.mu.Unlock()
	for deadline := time.Now().Add(maxAfter); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		r.mu.Lock()
		ok := !r.firstOK.IsZero() && time.Since(r.lastBad) > steady
		r.mu.Unlock()
		if ok {
			break
		}
	}
	close(stop)
	stopped := make(chan struct{})
	var calls int
	var confirmed []int
	go func() { calls, confirmed = wait(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(callTimeout + hungAfter):
		r.hung += callers + casters + 1
		t.Errorf("requests still under way %v after the load stopped", callTimeout+hungAfter)
		<-stopped
	}
	time.Sleep(time.Second) // casts confirmed at the end run now
	expired := expiredNotes(e.dead)
	e.stop(t)
	r.losses = f.losses
	if !r.firstOK.IsZero() {
		r.recover = r.firstOK.Sub(r.healed)
	}
	r.twice, r.lost, r.expired = counts(e, calls, r.casts, confirmed, expired)
	return r
}

// counts returns the requests executed twice, calls and casts, the
// confirmed casts never executed nor expired, and those expired (their
// deadline passed before a server could take them: expiredNotes).
func counts(e *env, calls, casts int, confirmed []int, expired map[int]bool) (twice, lost, expiredN int) {
	for id := 1; id <= calls; id++ {
		n := 0
		for _, a := range e.ariths {
			n += a.Executions(id)
		}
		if n > 1 {
			twice++
		}
	}
	notes := func(id int) (n int) {
		for _, f := range e.fleets {
			n += f.Notes(id)
		}
		return n
	}
	for id := 1; id <= casts; id++ {
		if notes(id) > 1 {
			twice++
		}
	}
	for _, id := range confirmed {
		switch {
		case notes(id) > 0:
		case expired[id]:
			expiredN++
		default:
			lost++
		}
	}
	return twice, lost, expiredN
}

// leader returns the node (1-based) of the leader of topic's quorum queue.
func leader(t *testing.T, topic string) int {
	t.Helper()
	for _, line := range strings.Split(script(t, "ctl", "1", "list_queues", "-q", "name", "leader"), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == topic {
			var i int
			if _, err := fmt.Sscanf(f[1], "amqprpc-%d@", &i); err == nil {
				return i
			}
		}
	}
	t.Fatalf("no leader for queue %s", topic)
	return 0
}

// signal sends sig to node i.
func signal(t *testing.T, i int, sig syscall.Signal) {
	t.Helper()
	pid, err := strconv.Atoi(script(t, "pid", strconv.Itoa(i)))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		t.Fatal(err)
	}
}

func TestMain(m *testing.M) {
	if _, err := os.Stat("/tmp/amqprpc-cluster/nodes"); err != nil && os.Getenv("AMQPRPC_CLUSTER_DIR") == "" {
		fmt.Fprintln(os.Stderr, "cluster: no cluster running: run make cluster-test")
		os.Exit(1)
	}
	os.Exit(m.Run())
}
