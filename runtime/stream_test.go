package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqprpc/amqprpc/describe"
	"github.com/amqprpc/amqprpc/runtime"
)

// counter is a service with a stream: Count sends the numbers from 0 to
// n-1, then fails with fail, if set. It counts what it yields and says
// when a stream's iteration ended, and why.
type counter struct {
	yielded atomic.Int64
	pace    time.Duration // between items
	ended   chan error    // the method's context's error when its iteration ended, one a stream
	started chan struct{} // one a stream, as it starts
}

func newCounter() *counter {
	return &counter{ended: make(chan error, 64), started: make(chan struct{}, 64)}
}

func (c *counter) Count(ctx context.Context, n int, fail string) iter.Seq2[int, error] {
	return func(yield func(int, error) bool) {
		c.started <- struct{}{}
		defer func() { c.ended <- ctx.Err() }()
		for i := 0; n < 0 || i < n; i++ {
			if c.pace > 0 {
				select {
				case <-time.After(c.pace):
				case <-ctx.Done():
					return
				}
			}
			c.yielded.Add(1)
			if !yield(i, nil) {
				return
			}
		}
		if fail != "" {
			yield(0, &runtime.Error{Code: runtime.CodeAborted, Message: fail})
		}
	}
}

type countArgs struct {
	N    int    `json:"n"`
	Fail string `json:"fail"`
}

var counterDesc = runtime.ServiceDesc{ServiceName: "Counter", Methods: []runtime.MethodDesc{{
	Name: "count", Mode: runtime.Stream,
	Handler: func(impl any, ctx context.Context, dec func(any) error) (any, error) {
		var a countArgs
		if err := dec(&a); err != nil {
			return nil, err
		}
		return runtime.ItemsOf(impl.(*counter).Count(ctx, a.N, a.Fail)), nil
	},
}}}

// serveCounter starts a server of c on topic.
func serveCounter(t *testing.T, topic string, c *counter, opts ...runtime.ServerOption) *runtime.Server {
	t.Helper()
	return serveCounterVia(t, brokerURL(), topic, c, opts...)
}

func count(ctx context.Context, inv runtime.Invoker, topic string, n int, fail string) iter.Seq2[int, error] {
	return runtime.StreamOf[int](ctx, inv, runtime.Request{Target: runtime.Target{Topic: topic}, Service: &counterDesc, Method: "count", Args: &countArgs{N: n, Fail: fail}})
}

func TestStreamItemsInOrder(t *testing.T) {
	for _, profile := range []runtime.Profile{runtime.Fast, runtime.Safe} {
		t.Run(string(profile), func(t *testing.T) { testStreamItemsInOrder(t, runtime.WithProfile(profile)) })
	}
	t.Run("quorum", func(t *testing.T) { testStreamItemsInOrder(t, runtime.WithQueueType(runtime.QueueQuorum)) })
	t.Run("at most once", func(t *testing.T) { testStreamItemsInOrder(t, runtime.WithAckAfterReply(false)) })
}

func testStreamItemsInOrder(t *testing.T, opt runtime.ServerOption) {
	topic := newTopic(t)
	serveCounter(t, topic, newCounter(), opt)
	copts := []runtime.ClientOption{runtime.WithStreamWindow(16)}
	if o, ok := opt.(runtime.Option); ok {
		copts = append(copts, o)
	}
	c := dial(t, copts...)
	for _, n := range []int{0, 1, 15, 16, 17, 1000} {
		got := 0
		for v, err := range count(ctxTimeout(t, 10*time.Second), c, topic, n, "") {
			if err != nil {
				t.Fatalf("n=%d: after %d items: %v", n, got, err)
			}
			if v != got {
				t.Fatalf("n=%d: item %d is %d", n, got, v)
			}
			got++
		}
		if got != n {
			t.Fatalf("n=%d: got %d items", n, got)
		}
	}
	var last error
	got := 0
	for _, err := range count(ctxTimeout(t, 10*time.Second), c, topic, 5, "out of numbers") {
		if err != nil {
			last = err
			break
		}
		got++
	}
	if got != 5 || remoteCode(last) != runtime.CodeAborted {
		t.Fatalf("a stream that fails after 5 items: got %d items, then %v", got, last)
	}
	if !errors.As(last, new(*runtime.Error)) {
		t.Fatalf("not an *Error: %v", last)
	}
}

// ended waits for the end of a stream's iteration on c's server and
// returns the method's context's error then, failing when it takes more
// than within.
func ended(t *testing.T, c *counter, within time.Duration, what string) error {
	t.Helper()
	select {
	case err := <-c.ended:
		return err
	case <-time.After(within):
		t.Fatalf("%s: the server's iteration did not end within %v", what, within)
		return nil
	}
}

// flowBound is the most items a server yields beyond what its caller read:
// the window, what its producer encodes ahead, and the one it holds.
func flowBound(window int) int64 { return int64(window) + 64 + 2 }

func TestStreamBreakEarly(t *testing.T) {
	topic := newTopic(t)
	cn := newCounter()
	serveCounter(t, topic, cn, runtime.WithMaxStreams(1))
	c := dial(t, runtime.WithStreamWindow(16))
	var freed time.Time    // when the last stream broke: its slot must be free within a second
	for round := range 3 { // one slot: each stream starts only once the last freed it
		read := 0
		start := time.Now()
		for refused := true; refused; {
			refused = false
			for v, err := range count(ctxTimeout(t, 10*time.Second), c, topic, -1, "") {
				if remoteCode(err) == runtime.CodeResourceExhausted && read == 0 && time.Since(freed) < time.Second {
					refused = true // the slot is freed as the last stream's goroutines end: soon
					time.Sleep(10 * time.Millisecond)
					break
				}
				if err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
				if v != read {
					t.Fatalf("round %d: item %d is %d", round, read, v)
				}
				if read++; read == 10 {
					break
				}
			}
		}
		broke := time.Now()
		freed = broke
		if err := ended(t, cn, 2*time.Second, "break"); !errors.Is(err, context.Canceled) {
			t.Fatalf("round %d: the method's context after the caller broke out: %v", round, err)
		}
		t.Logf("round %d: first 10 items in %v; the server stopped %v after the break", round, broke.Sub(start), time.Since(broke))
		if y := cn.yielded.Swap(0); y > 10+flowBound(16) {
			t.Fatalf("round %d: the server yielded %d items for a caller that read 10 with a window of 16", round, y)
		}
	}
}

func TestStreamSlowReader(t *testing.T) {
	topic := newTopic(t)
	cn := newCounter()
	serveCounter(t, topic, cn)
	c := dial(t, runtime.WithStreamWindow(8))
	read := int64(0)
	most := int64(0)
	for _, err := range count(ctxTimeout(t, 20*time.Second), c, topic, -1, "") {
		if err != nil {
			t.Fatal(err)
		}
		read++
		time.Sleep(10 * time.Millisecond) // a slow reader: the server must wait for it
		ahead := cn.yielded.Load() - read
		most = max(most, ahead)
		if ahead > flowBound(8) {
			t.Fatalf("after %d items read, the server yielded %d: %d ahead, beyond the bound of %d", read, cn.yielded.Load(), ahead, flowBound(8))
		}
		if read == 150 {
			break
		}
	}
	t.Logf("the server ran at most %d items ahead of its reader (bound %d)", most, flowBound(8))
	if most < 8 {
		t.Fatalf("the server ran at most %d items ahead: the window of 8 was not used", most)
	}
	ended(t, cn, 2*time.Second, "break")
}

func TestStreamDeadline(t *testing.T) {
	topic := newTopic(t)
	cn := newCounter()
	cn.pace = 5 * time.Millisecond
	serveCounter(t, topic, cn)
	c := dial(t)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	var last error
	n := 0
	for _, err := range count(ctx, c, topic, -1, "") {
		if err != nil {
			last = err
			break
		}
		n++
	}
	took := time.Since(start)
	if !errors.Is(last, context.DeadlineExceeded) || took > time.Second {
		t.Fatalf("after %d items and %v, a stream at its deadline of 500ms ended with %v", n, took, last)
	}
	if err := ended(t, cn, time.Second, "deadline"); err == nil {
		t.Fatal("the method's context did not end with the stream's deadline")
	}
}

func TestStreamShutdown(t *testing.T) {
	t.Run("finishes", func(t *testing.T) {
		topic := newTopic(t)
		cn := newCounter()
		cn.pace = 5 * time.Millisecond
		s := serveCounter(t, topic, cn)
		c := dial(t)
		shut := make(chan error, 1)
		n := 0
		for v, err := range count(ctxTimeout(t, 10*time.Second), c, topic, 200, "") {
			if err != nil {
				t.Fatalf("after %d items: %v", n, err)
			}
			if v != n {
				t.Fatalf("item %d is %d", n, v)
			}
			if n++; n == 5 {
				go func() {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					shut <- s.Shutdown(ctx)
				}()
			}
		}
		if n != 200 {
			t.Fatalf("a stream in flight at Shutdown got %d of its 200 items", n)
		}
		if err := <-shut; err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	})
	t.Run("cut", func(t *testing.T) {
		topic := newTopic(t)
		cn := newCounter()
		cn.pace = 5 * time.Millisecond
		s := serveCounter(t, topic, cn)
		c := dial(t)
		var last error
		var cut time.Time
		n := 0
		for _, err := range count(ctxTimeout(t, 10*time.Second), c, topic, -1, "") {
			if err != nil {
				last = err
				break
			}
			if n++; n == 5 {
				cut = time.Now()
				go func() {
					ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
					defer cancel()
					s.Shutdown(ctx)
				}()
			}
		}
		took := time.Since(cut)
		if remoteCode(last) != runtime.CodeUnavailable || errors.Is(last, runtime.ErrStreamBroken) || errors.Is(last, runtime.ErrServerSilent) {
			t.Fatalf("a stream that Shutdown gave up on ended with %v, not the server's unavailable", last)
		}
		if took > 2*time.Second {
			t.Fatalf("the stream ended %v after Shutdown(300ms) began", took)
		}
		t.Logf("a stream cut by Shutdown(300ms) ended %v after it began: %v", took, last)
		ended(t, cn, time.Second, "shutdown")
	})
}

// serveCounterProcess serves an endless counter on topic in this process,
// says "serving" on its standard output, and serves until killed.
func serveCounterProcess(topic string) {
	cn := newCounter()
	cn.started, cn.ended = make(chan struct{}, 1<<10), make(chan error, 1<<10)
	cn.pace = time.Millisecond
	s := runtime.NewServer(brokerURL(), topic, runtime.WithServerName("counter"))
	s.RegisterService(&counterDesc, cn)
	go func() {
		for range time.Tick(10 * time.Millisecond) {
			if conn, err := amqp.Dial(brokerURL()); err == nil { // serving once its queue is there
				ch, _ := conn.Channel()
				_, err := ch.QueueDeclarePassive(topic, true, false, false, false, nil)
				conn.Close()
				if err == nil {
					fmt.Println("serving")
					return
				}
			}
		}
	}()
	s.Serve()
}

// readUntilEnd reads st's items until it ends, and returns its error and
// when it came.
func readUntilEnd(seq iter.Seq2[int, error]) (int, error) {
	n := 0
	for _, err := range seq {
		if err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func TestStreamServerKilled(t *testing.T) {
	topic := newTopic(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "AMQPRPC_STREAM_SERVE="+topic)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line := make([]byte, 8)
	if _, err := io.ReadFull(out, line); err != nil || string(line) != "serving\n" {
		t.Fatalf("the server process did not start: %q %v", line, err)
	}
	for _, window := range []int{8, 1 << 16} { // credits flowing back, and none due for long
		c := dial(t, runtime.WithStreamWindow(window), runtime.WithStreamSilence(2*time.Second))
		var killed time.Time
		n := 0
		for _, err := range count(context.Background(), c, topic, -1, "") {
			if err != nil {
				took := time.Since(killed)
				if killed.IsZero() || !errors.Is(err, runtime.ErrStreamBroken) && !errors.Is(err, runtime.ErrServerSilent) {
					t.Fatalf("window %d: after %d items: %v", window, n, err)
				}
				if took > 3*time.Second {
					t.Fatalf("window %d: the stream of a server killed ended %v after, beyond its silence of 2s", window, took)
				}
				t.Logf("window %d: the stream of a server killed after %d items ended %v after: %v", window, n, took, err)
				break
			}
			if n++; n == 100 {
				killed = time.Now()
				cmd.Process.Kill()
			}
		}
		if window == 8 { // the second stream needs a server
			cmd.Wait()
			cmd = exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "AMQPRPC_STREAM_SERVE="+topic)
			cmd.Stderr = os.Stderr
			out, _ = cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(out, line); err != nil {
				t.Fatal(err)
			}
		}
	}
	cmd.Wait()
}

func TestStreamConnectionLost(t *testing.T) {
	t.Run("server", func(t *testing.T) {
		topic := newTopic(t)
		p, url := proxy(t)
		cn := newCounter()
		cn.pace = time.Millisecond
		serveCounterVia(t, url, topic, cn, fastReconnect)
		c := dial(t, runtime.WithStreamWindow(1<<16), runtime.WithStreamSilence(2*time.Second))
		var cut time.Time
		n := 0
		var last error
		for _, err := range count(context.Background(), c, topic, -1, "") {
			if err != nil {
				last = err
				break
			}
			if n++; n == 50 {
				cut = time.Now()
				p.Cut()
			}
		}
		took := time.Since(cut)
		if !errors.Is(last, runtime.ErrServerSilent) && !errors.Is(last, runtime.ErrStreamBroken) || took > 3*time.Second {
			t.Fatalf("a stream whose server lost its connection ended %v after with %v", took, last)
		}
		t.Logf("a stream whose server lost its connection after %d items ended %v after: %v", n, took, last)
		if err := ended(t, cn, time.Second, "server's connection lost"); err == nil {
			t.Fatal("the method's context did not end with the server's connection")
		}
	})
	t.Run("client", func(t *testing.T) {
		topic := newTopic(t)
		p, url := proxy(t)
		cn := newCounter()
		serveCounter(t, topic, cn)
		c := dialURL(t, url, runtime.WithStreamWindow(16))
		var cut time.Time
		n := 0
		var last error
		for _, err := range count(context.Background(), c, topic, -1, "") {
			if err != nil {
				last = err
				break
			}
			if n++; n == 10 {
				cut = time.Now()
				p.Cut()
			}
		}
		if !errors.Is(last, runtime.ErrConnectionLost) {
			t.Fatalf("a stream whose caller lost its connection ended with %v", last)
		}
		if err := ended(t, cn, 3*time.Second, "caller's connection lost"); err == nil {
			t.Fatal("the method's context did not end with its caller's connection")
		}
		t.Logf("the server stopped the stream %v after its caller lost its connection", time.Since(cut))
	})
}

func TestStreamMismatches(t *testing.T) {
	topic := newTopic(t)
	serveCounter(t, topic, newCounter())
	c := dial(t)
	ctx := ctxTimeout(t, 10*time.Second)
	// A call to a stream method, and a stream of a method that is none.
	err := c.Invoke(ctx, runtime.Request{Target: runtime.Target{Topic: topic}, Method: "count", Args: &countArgs{N: 1}}, new(any))
	if remoteCode(err) != runtime.CodeFailedPrecondition {
		t.Fatalf("a call to a stream method: %v", err)
	}
	for _, err := range runtime.StreamOf[int](ctx, c, runtime.Request{Target: runtime.Target{Topic: topic}, Method: describe.Request}) {
		if remoteCode(err) != runtime.CodeFailedPrecondition {
			t.Fatalf("a stream of a method that is none: %v", err)
		}
	}
	for _, err := range runtime.StreamOf[int](ctx, c, runtime.Request{Target: runtime.Target{Topic: topic}, Method: "nope"}) {
		if remoteCode(err) != runtime.CodeUnimplemented {
			t.Fatalf("a stream of no method: %v", err)
		}
	}
	for _, err := range runtime.StreamOf[int](ctx, c, runtime.Request{Target: runtime.Target{Topic: topic + ".nobody"}, Method: "count"}) {
		if !errors.Is(err, runtime.ErrNoServer) {
			t.Fatalf("a stream of a topic no server serves: %v", err)
		}
	}
	for _, err := range runtime.StreamOf[int](ctx, c, runtime.Request{Target: runtime.Target{Topic: topic}, Method: "count", Args: map[string]any{"n": "seven"}}) {
		if remoteCode(err) != runtime.CodeInvalidArgument {
			t.Fatalf("a stream with wrong arguments: %v", err)
		}
	}
	// oslo.messaging has no streams: its clients cannot ask, its servers cannot serve one.
	oc := dial(t, runtime.WithOslo(runtime.OsloConfig{}))
	for _, err := range count(ctx, oc, topic, 1, "") {
		if err == nil || !strings.Contains(err.Error(), "no streams") {
			t.Fatalf("a stream in oslo mode: %v", err)
		}
	}
	s := runtime.NewServer(brokerURL(), topic, runtime.WithOslo(runtime.OsloConfig{}))
	s.RegisterService(&counterDesc, newCounter())
	if err := s.Serve(); err == nil || !strings.Contains(err.Error(), "no streams") {
		t.Fatalf("Serve in oslo mode with a stream method: %v", err)
	}
}

// Streams beyond WithMaxStreams are refused at once, never held: the
// others complete, and the slots they free take the next.
func TestStreamsAtOnce(t *testing.T) {
	topic := newTopic(t)
	cn := newCounter()
	cn.started, cn.ended = make(chan struct{}, 1000), make(chan error, 1000)
	cn.pace = time.Millisecond
	serveCounter(t, topic, cn, runtime.WithMaxStreams(8))
	c := dial(t, runtime.WithStreamWindow(32))
	errs := make(chan error, 64)
	for i := range 64 {
		go func() {
			n, err := readUntilEnd(count(ctxTimeout(t, 20*time.Second), c, topic, 100+i, ""))
			switch {
			case remoteCode(err) == runtime.CodeResourceExhausted && n == 0:
			case err == nil && n != 100+i:
				err = fmt.Errorf("stream %d: %d items of %d", i, n, 100+i)
			}
			errs <- err
		}()
	}
	done, refused := 0, 0
	for range 64 {
		switch err := <-errs; {
		case err == nil:
			done++
		case remoteCode(err) == runtime.CodeResourceExhausted:
			refused++
		default:
			t.Fatal(err)
		}
	}
	if done < 8 || refused == 0 {
		t.Fatalf("64 streams through 8 slots: %d completed, %d refused", done, refused)
	}
	t.Logf("64 streams through 8 slots: %d completed, %d refused", done, refused)
	for i := range 16 { // one at a time: each finds a slot
		if n, err := readUntilEnd(count(ctxTimeout(t, 20*time.Second), c, topic, 100, "")); n != 100 || err != nil {
			t.Fatalf("stream %d after: %d items, %v", i, n, err)
		}
	}
}

// Through a Local, a stream is what it is through a broker: its items in
// order, its error mapped, its interceptors on both sides, its break
// stopping the method.
func TestStreamLocal(t *testing.T) {
	var seen []string
	var mu sync.Mutex
	note := func(s string) {
		mu.Lock()
		seen = append(seen, s)
		mu.Unlock()
	}
	client := func(ctx context.Context, req *runtime.Request, next runtime.Streamer) (runtime.ClientStream, error) {
		note("client " + req.Mode.String() + " " + req.Method)
		ctx = runtime.WithMetadata(ctx, runtime.Metadata{"k": "v"})
		return next(ctx, req)
	}
	server := func(ctx context.Context, info *runtime.ServerInfo, next runtime.StreamHandler) (runtime.Items, error) {
		note("server " + info.Method + " " + runtime.IncomingMetadata(ctx)["k"])
		items, err := next(ctx)
		if err != nil {
			return nil, err
		}
		return func(yield func(any, error) bool) {
			n := 0
			defer func() { note(fmt.Sprintf("server sent %d", n)) }()
			for v, err := range items {
				if err == nil {
					n++
				}
				if !yield(v, err) {
					return
				}
			}
		}, nil
	}
	l := runtime.NewLocal("counter", runtime.WithStreamClientInterceptors(client), runtime.WithStreamServerInterceptors(server))
	defer l.Close()
	cn := newCounter()
	l.RegisterService(&counterDesc, cn)
	ctx := ctxTimeout(t, 5*time.Second)
	n, err := readUntilEnd(count(ctx, l, "counter", 10, "enough"))
	if n != 10 || remoteCode(err) != runtime.CodeAborted {
		t.Fatalf("%d items, then %v", n, err)
	}
	for v, err := range count(ctx, l, "counter", -1, "") {
		if err != nil || v == 4 {
			break
		}
	}
	if err := ended(t, cn, time.Second, "break"); !errors.Is(err, context.Canceled) {
		t.Fatalf("the method's context after a break: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := "client stream count,server count v,server sent 10,client stream count,server count v,server sent 5"
	if got := strings.Join(seen, ","); got != want {
		t.Fatalf("interceptors saw\n%s\nwant\n%s", got, want)
	}
}

// Through a broker, a stream carries what a call does: metadata, who
// calls, the policy that admits them, and both sides' stream interceptors.
func TestStreamAsACall(t *testing.T) {
	topic := newTopic(t)
	var got atomic.Value
	server := func(ctx context.Context, info *runtime.ServerInfo, next runtime.StreamHandler) (runtime.Items, error) {
		got.Store(fmt.Sprintf("%s %s %s", info.Method, runtime.IncomingMetadata(ctx)["k"], runtime.Caller(ctx).User))
		return next(ctx)
	}
	var opened atomic.Int32
	client := func(ctx context.Context, req *runtime.Request, next runtime.Streamer) (runtime.ClientStream, error) {
		opened.Add(1)
		return next(runtime.WithMetadata(ctx, runtime.Metadata{"k": "v"}), req)
	}
	serveCounter(t, topic, newCounter(), runtime.WithStreamServerInterceptors(server),
		runtime.WithAuthorization(runtime.Policy{Methods: map[string][]string{"count": {"user:guest"}, "*": {"anyone"}}}))
	c := dial(t, runtime.WithStreamClientInterceptors(client))
	n, err := readUntilEnd(count(ctxTimeout(t, 5*time.Second), c, topic, 3, ""))
	if n != 3 || err != nil || got.Load() != "count v guest" || opened.Load() != 1 {
		t.Fatalf("%d items, %v; the server's interceptor saw %q; the client's opened %d", n, err, got.Load(), opened.Load())
	}
	// A caller the policy does not admit is refused before the method runs.
	closed := newTopic(t)
	cn := newCounter()
	serveCounter(t, closed, cn, runtime.WithAuthorization(runtime.Policy{Methods: map[string][]string{"count": {"user:nobody"}}}))
	n, err = readUntilEnd(count(ctxTimeout(t, 5*time.Second), c, closed, 3, ""))
	if n != 0 || remoteCode(err) != runtime.CodePermissionDenied || len(cn.started) != 0 {
		t.Fatalf("a stream for a caller the policy does not admit: %d items, %v; %d started", n, err, len(cn.started))
	}
}

// A stream's end counts the items sent, whatever credit its caller
// granted since: a credit that comes after the last item must not make a
// stream that ended well look broken.
func TestStreamEndAfterLateCredit(t *testing.T) {
	topic := newTopic(t)
	cn := newCounter()
	cn.started, cn.ended = make(chan struct{}, 300), make(chan error, 300)
	serveCounter(t, topic, cn)
	c := dial(t, runtime.WithStreamWindow(2)) // a credit after each item
	for i := range 300 {
		n, err := readUntilEnd(count(ctxTimeout(t, 10*time.Second), c, topic, 7, ""))
		if n != 7 || err != nil {
			t.Fatalf("stream %d: %d items of 7, then %v", i, n, err)
		}
	}
}

// A stream cut short by its deadline, or by its caller, never ends as if
// it were whole, whether its method stops with its context or fails with
// the context's error.
func TestStreamCutShortIsNoEnd(t *testing.T) {
	l := runtime.NewLocal("counter")
	defer l.Close()
	cn := newCounter()
	cn.started, cn.ended = make(chan struct{}, 100), make(chan error, 100)
	cn.pace = 10 * time.Millisecond
	l.RegisterService(&counterDesc, cn)
	topic := newTopic(t)
	serveCounter(t, topic, cn)
	c := dial(t)
	for _, inv := range []struct {
		name  string
		inv   runtime.Invoker
		topic string
	}{{"local", l, "counter"}, {"broker", c, topic}} {
		for i := range 10 {
			ctx, cancel := context.WithTimeout(context.Background(), 120*time.Millisecond)
			n, err := readUntilEnd(count(ctx, inv.inv, inv.topic, -1, ""))
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) && remoteCode(err) != runtime.CodeDeadlineExceeded {
				t.Fatalf("%s %d: a stream at its deadline ended after %d items with %v", inv.name, i, n, err)
			}
		}
	}
	for i := range 20 { // the ends of the streams above
		ended(t, cn, 2*time.Second, fmt.Sprintf("stream %d at its deadline", i))
	}
	// Cancelled, the server stops within a round trip, not at its next beat.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := 0
	var cancelled time.Time
	for range count(ctx, c, topic, -1, "") {
		if n++; n == 5 {
			cancelled = time.Now()
			cancel()
		}
	}
	ended(t, cn, 300*time.Millisecond, "cancel")
	t.Logf("the server stopped %v after its caller cancelled", time.Since(cancelled))
}

// serveCounterVia starts a server of c on topic through the broker at url.
func serveCounterVia(t *testing.T, url, topic string, c *counter, opts ...runtime.ServerOption) *runtime.Server {
	t.Helper()
	s := runtime.NewServer(url, topic, append([]runtime.ServerOption{runtime.WithServerName("counter")}, opts...)...)
	s.RegisterService(&counterDesc, c)
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		<-done
	})
	waitServing(t, topic, "counter")
	return s
}

// Under the permissions of scripts/permissions.sh, and no more, a server
// serves streams and a caller reads them, granting credit as it goes; a
// stranger is refused.
func TestStreamLeastPrivilege(t *testing.T) {
	ownNode(t)
	topic := newTopic(t)
	permissionsDemo(t, topic)
	serveCounterVia(t, urlAs(topic+"-service"), topic, newCounter())
	caller, err := runtime.Dial(urlAs(topic+"-caller"), runtime.WithStreamWindow(8))
	if err != nil {
		t.Fatal(err)
	}
	defer caller.Close()
	if n, err := readUntilEnd(count(ctxTimeout(t, 10*time.Second), caller, topic, 100, "")); n != 100 || err != nil {
		t.Fatalf("the caller's stream: %d items of 100, then %v", n, err)
	}
	stranger, err := runtime.Dial(urlAs(topic + "-stranger"))
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	if _, err := readUntilEnd(count(ctxTimeout(t, 10*time.Second), stranger, topic, 100, "")); !errors.Is(err, runtime.ErrAccessRefused) {
		t.Fatalf("a stranger's stream: %v", err)
	}
}

// rawStream asks topic's server for a stream of n with a plain AMQP
// channel, and returns its first message.
func rawStream(t *testing.T, ch *amqp.Channel, topic string, n int) amqp.Delivery {
	t.Helper()
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"method":"count","args":{"n":%d}}`, n)
	if err := ch.PublishWithContext(context.Background(), runtime.DefaultExchange, topic, false, false, amqp.Publishing{
		CorrelationId: "raw-" + topic, ReplyTo: q.Name, Headers: amqp.Table{"amqprpc-stream": int64(1)}, Body: []byte(body)}); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-msgs:
		return d
	case <-time.After(5 * time.Second):
		t.Fatal("no stream message came")
		return amqp.Delivery{}
	}
}

// What a peer sends to a server's credit queue, where anyone who may call
// the topic may send, costs the server nothing it keeps: past its budget
// of request bytes, it still serves.
func TestStreamCreditQueueJunk(t *testing.T) {
	topic := newTopic(t)
	cn := newCounter()
	serveCounter(t, topic, cn, runtime.WithMaxRequestBytes(1<<20))
	ch := rawChannel(t)
	first := rawStream(t, ch, topic, -1)
	creditTo, _ := first.Headers["amqprpc-credit-to"].(string)
	if creditTo == "" {
		t.Fatalf("a stream message without a credit queue: %+v", first.Headers)
	}
	junk := make([]byte, 100<<10)
	for range 40 { // 4 MiB: four times the budget
		if err := ch.PublishWithContext(context.Background(), runtime.DefaultExchange, creditTo, false, false, amqp.Publishing{Type: "amqprpc.credit", Body: junk}); err != nil {
			t.Fatal(err)
		}
	}
	c := dial(t)
	if n, err := readUntilEnd(count(ctxTimeout(t, 10*time.Second), c, topic, 50, "")); n != 50 || err != nil {
		t.Fatalf("after 4 MiB of junk to its credit queue, a stream: %d items of 50, %v", n, err)
	}
}

// A stream's request that a server took and gave back, or lost, before
// it started the stream, is served by the next: a stream is acknowledged
// before its first item is asked for, so one delivered again did not run.
func TestStreamDeliveredAgain(t *testing.T) {
	topic := newTopic(t)
	conn, err := amqp.Dial(brokerURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	taker, err := conn.Channel() // takes the request, and is lost with it
	if err != nil {
		t.Fatal(err)
	}
	if _, err := taker.QueueDeclare(topic, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := taker.QueueBind(topic, topic, runtime.DefaultExchange, false, nil); err != nil {
		t.Fatal(err)
	}
	taken, err := taker.Consume(topic, "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, runtime.WithTimeout(3*time.Second))
	got := make(chan error, 1)
	go func() {
		n, err := readUntilEnd(count(ctxTimeout(t, 15*time.Second), c, topic, 10, ""))
		if err == nil && n != 10 {
			err = fmt.Errorf("%d items of 10", n)
		}
		got <- err
	}()
	<-taken
	taker.Close() // the broker delivers it again, to the server
	cn := newCounter()
	serveCounter(t, topic, cn)
	if err := <-got; err != nil {
		t.Fatalf("a stream's request delivered again: %v", err)
	}
	if len(cn.started) != 1 {
		t.Fatalf("the method ran %d times", len(cn.started))
	}
}
