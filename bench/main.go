// Command bench measures amqprpc against a hand-written amqp091-go RPC
// (baseline) and a bare ping-pong through the broker (floor), in separate
// client and server processes against the local RabbitMQ, interleaved in
// one run, and writes the table to bench/RESULTS.md:
//
//	go run ./bench [-reps 3] [-duration 3s] [-out bench/RESULTS.md]
//
// (make bench). For each implementation it measures sequential latency
// (one call in flight), throughput with 1, 8, 64 and 256 calls in flight
// over one client, and the CPU time per call of the client, the server and
// the broker (beam.smp); then amqprpc with each delivery guarantee on and
// off, with two and four server processes, and its memory with 10,000
// calls in flight. It leaves no process, queue or exchange behind.
//
// A section of its own, "A plain client's reply path" (bench/replypath.go),
// measures what a client written with amqp091-go alone gets from the
// default amqprpc server when it asks for its replies over direct reply-to
// (plain-direct) and to a queue of its own (plain-queue). With -replypath
// the benchmark measures that section alone and prints it, without
// writing -out: in under two minutes with the default -reps 3 -duration
// 3s, in about one with -quick, which keeps the sequential latency and 64
// calls in flight:
//
//	go run ./bench -replypath [-quick]
//
// -observe does the same for the interceptors and OpenTelemetry section,
// and -paths for the section on the paths users run (one call at a time,
// a quorum queue, OpenTelemetry, Safe, batching off, oslo mode), each in
// one rotation with the hand-written RPC; -streams for streams (bench/streams.go):
// one of 100,000 items against 100,000 sequential calls, 1,000 at once,
// and one of 10 million items, with the memory of client and server.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"os/exec"
	goruntime "runtime"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqprpc/amqprpc/internal/wire"
	"github.com/amqprpc/amqprpc/runtime"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func numCPU() int { return goruntime.NumCPU() }

func brokerURL() string {
	if u := os.Getenv("AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

func main() {
	log.SetFlags(0)
	if path := os.Getenv("BENCH_CPUPROFILE"); path != "" && len(os.Args) > 1 {
		// Profile this process (a server or a client) into path.role.pid.
		f, err := os.Create(fmt.Sprintf("%s.%s.%d", path, os.Args[1], os.Getpid()))
		if err != nil {
			log.Fatal(err)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if !subcommand() {
		runMain(os.Args[1:])
	}
}

// subcommand runs this process as a server or a client of the benchmark,
// as the orchestrator starts them, and reports whether it did.
func subcommand() bool {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "serve":
			serveMain(os.Args[2:])
			return true
		case "client":
			clientMain(os.Args[2:])
			return true
		case "streamserve":
			streamServeMain(os.Args[2:])
			return true
		case "streamclient":
			streamClientMain(os.Args[2:])
			return true
		}
	}
	return false
}

// serveMain is a server process: serve -impl NAME -topic T -name N.
func serveMain(args []string) {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	name := fs.String("impl", "", "implementation")
	topic := fs.String("topic", "", "topic")
	server := fs.String("name", "s1", "server name")
	variant := fs.String("variant", "default", "amqprpc variant")
	prefetch := fs.Int("prefetch", 0, "prefetch")
	url := fs.String("url", brokerURL(), "broker")
	fs.Parse(args)
	im, ok := impls[*name]
	if !ok {
		log.Fatalf("serve: %s: %v", *name, errUnknownImpl)
	}
	ctx, stop := signalContext()
	defer stop()
	err := im.serve(ctx, *url, *topic, *server, options{variant: *variant, prefetch: *prefetch}, func() { fmt.Println("ready") })
	if err != nil && ctx.Err() == nil {
		log.Fatalf("serve %s: %v", *name, err)
	}
}

// result is what a client process measured.
type result struct {
	Calls     int64   `json:"calls"`
	Errors    int64   `json:"errors"`
	Seconds   float64 `json:"seconds"`
	CPU       float64 `json:"cpu"` // the client's CPU seconds in the window
	P50, P90  float64 // latency, microseconds (sequential runs)
	P99       float64
	MaxRSS    float64 `json:"rss"` // MiB, for the memory run
	FirstErr  string  `json:"first_err,omitempty"`
	ServerCPU float64 `json:"-"` // filled in by the orchestrator
	BrokerCPU float64 `json:"-"`
}

// clientMain is a client process: it warms up, prints "start", calls for
// the duration with inflight calls at once, and prints its result as JSON.
func clientMain(args []string) {
	fs := flag.NewFlagSet("client", flag.ExitOnError)
	name := fs.String("impl", "", "implementation")
	topic := fs.String("topic", "", "topic")
	variant := fs.String("variant", "default", "amqprpc variant")
	inflight := fs.Int("inflight", 1, "calls in flight")
	warmup := fs.Duration("warmup", time.Second, "warm-up")
	duration := fs.Duration("duration", 3*time.Second, "measured window")
	latency := fs.Bool("latency", false, "record each call's latency")
	url := fs.String("url", brokerURL(), "broker")
	fs.Parse(args)
	im := impls[*name]
	call, closeFn, err := im.dial(*url, *topic, options{variant: *variant})
	if err != nil {
		log.Fatalf("client %s: %v", *name, err)
	}
	defer closeFn()

	run := func(d time.Duration, record bool) result {
		var calls, errs atomic.Int64
		var mu sync.Mutex
		var lat []float64
		var firstErr atomic.Value
		end := time.Now().Add(d)
		var wg sync.WaitGroup
		for w := range *inflight {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var mine []float64
				for i := w; time.Now().Before(end); i += *inflight {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					t0 := time.Now()
					err := call(ctx, i)
					el := time.Since(t0)
					cancel()
					if err != nil {
						errs.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
						continue
					}
					calls.Add(1)
					if record {
						mine = append(mine, float64(el.Microseconds()))
					}
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			}()
		}
		start := time.Now()
		wg.Wait()
		r := result{Calls: calls.Load(), Errors: errs.Load(), Seconds: time.Since(start).Seconds()}
		if e, ok := firstErr.Load().(string); ok {
			r.FirstErr = e
		}
		if len(lat) > 0 {
			sort.Float64s(lat)
			q := func(p float64) float64 { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
			r.P50, r.P90, r.P99 = q(0.50), q(0.90), q(0.99)
		}
		return r
	}
	run(*warmup, false)
	fmt.Println("start")
	cpu0 := selfCPU()
	r := run(*duration, *latency)
	r.CPU = selfCPU() - cpu0
	r.MaxRSS, _ = residentMB(os.Getpid())
	json.NewEncoder(os.Stdout).Encode(r)
}

func selfCPU() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func signalContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// The orchestrator closes our stdin to stop us.
		io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	return ctx, cancel
}

// proc is a child process of the orchestrator.
type proc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines *bufio.Scanner
}

// start starts this program as a server or a client process.
func start(args ...string) (*proc, error) { return startCmd(os.Args[0], args...) }

// startCmd starts the command name, such as a Python peer.
func startCmd(name string, args ...string) (*proc, error) {
	cmd := exec.Command(name, args...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, stdin: stdin, lines: bufio.NewScanner(out)}
	p.lines.Buffer(make([]byte, 1<<20), 1<<20)
	return p, nil
}

// expect reads lines until one equal to want.
func (p *proc) expect(want string) error {
	for p.lines.Scan() {
		if p.lines.Text() == want {
			return nil
		}
	}
	return fmt.Errorf("%s: ended before %q", p.cmd.Args[1], want)
}

func (p *proc) stop() {
	p.stdin.Close()
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
}

// servers is a set of server processes of one implementation on a topic.
type servers struct {
	procs []*proc
	topic string
}

func startServers(impl, variant, topic string, n, prefetch int) (*servers, error) {
	return startServersAt(brokerURL(), impl, variant, topic, n, prefetch)
}

// startServersAt starts servers connected to the broker at url.
func startServersAt(url, impl, variant, topic string, n, prefetch int) (*servers, error) {
	s := &servers{topic: topic}
	for i := range n {
		p, err := start("serve", "-impl", impl, "-variant", variant, "-topic", topic, "-name", fmt.Sprintf("s%d", i+1), "-prefetch", strconv.Itoa(prefetch), "-url", url)
		if err != nil {
			s.stop()
			return nil, err
		}
		s.procs = append(s.procs, p)
		if err := p.expect("ready"); err != nil {
			s.stop()
			return nil, err
		}
	}
	return s, nil
}

func (s *servers) cpu() float64 {
	var t float64
	for _, p := range s.procs {
		c, _ := cpuSeconds(p.cmd.Process.Pid)
		t += c
	}
	return t
}

func (s *servers) rss() float64 {
	var t float64
	for _, p := range s.procs {
		r, _ := residentMB(p.cmd.Process.Pid)
		t = max(t, r)
	}
	return t
}

func (s *servers) stop() {
	for _, p := range s.procs {
		p.stop()
	}
}

// measure runs one client process against srv and returns its result with
// the CPU the servers and the broker used in its window.
func measure(impl, variant string, srv *servers, inflight int, cfg config, latency bool, broker int) (result, error) {
	return measureAt(brokerURL(), impl, variant, srv, inflight, cfg, latency, func() float64 { return mustCPU(broker) })
}

// measureAt is measure with a client connected to the broker at url, and
// the brokers' CPU seconds from brokerCPU.
func measureAt(url, impl, variant string, srv *servers, inflight int, cfg config, latency bool, brokerCPU func() float64) (result, error) {
	args := []string{"client", "-impl", impl, "-variant", variant, "-topic", srv.topic, "-inflight", strconv.Itoa(inflight),
		"-duration", cfg.duration.String(), "-warmup", cfg.warmup.String(), "-url", url}
	if latency {
		args = append(args, "-latency")
	}
	p, err := start(args...)
	if err != nil {
		return result{}, err
	}
	return collect(p, impl, variant, srv, inflight, brokerCPU)
}

// collect reads the result of client process p, which calls srv, and
// stops it.
func collect(p *proc, impl, variant string, srv *servers, inflight int, brokerCPU func() float64) (result, error) {
	defer p.stop()
	if err := p.expect("start"); err != nil {
		return result{}, err
	}
	s0, b0 := srv.cpu(), brokerCPU()
	if !p.lines.Scan() {
		return result{}, fmt.Errorf("client %s: no result", impl)
	}
	s1, b1 := srv.cpu(), brokerCPU()
	var r result
	if err := json.Unmarshal(p.lines.Bytes(), &r); err != nil {
		return result{}, fmt.Errorf("client %s: %v: %s", impl, err, p.lines.Text())
	}
	r.ServerCPU, r.BrokerCPU = s1-s0, b1-b0
	if r.Errors > 0 {
		log.Printf("%s %s inflight %d: %d errors, e.g. %s", impl, variant, inflight, r.Errors, r.FirstErr)
	}
	return r, nil
}

func mustCPU(pid int) float64 {
	c, err := cpuSeconds(pid)
	if err != nil {
		log.Fatal(err)
	}
	return c
}

// cleanup deletes the queues and exchanges the benchmark declared.
func cleanup(topics []string) { cleanupAt(brokerURL(), topics) }

// cleanupAt deletes topics' queues and exchanges on the broker at url.
func cleanupAt(url string, topics []string) {
	conn, err := amqp.Dial(url)
	if err != nil {
		log.Printf("cleanup: %v", err)
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return
	}
	for _, t := range topics {
		ch.QueueDelete(t, false, false, false)
		ch.QueueDelete(t+".s1", false, false, false) // oslo.messaging's server queue
		ch.ExchangeDelete(wire.FanoutExchange(runtime.DefaultExchange, t), false, false)
		ch.ExchangeDelete(t+"_fanout", false, false)
	}
	ch.ExchangeDelete(baselineExchange, false, false)
	ch.ExchangeDelete(osloExchange, false, false)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	return s[len(s)/2]
}

func fmtRate(x float64) string { return strconv.FormatFloat(x, 'f', 0, 64) }

func fmtMicros(x float64) string { return strconv.FormatFloat(x, 'f', 0, 64) + "µs" }
