package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"iter"
	"log"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/amqprpc/amqprpc/runtime"
)

// The streams section: a stream against the calls it replaces, many
// streams at once, and one very long stream, each in a client process and
// a server process of their own, with the resident memory of both sampled
// as they run:
//
//	go run ./bench -streams [-quick]

// row is a stream's item, or a call's result: small, as a listing's.
type row struct {
	I    int    `json:"i"`
	Name string `json:"name"`
}

// source serves rows: Rows(n) streams n of them, Row(i) returns one.
type source struct{}

func (source) rows(ctx context.Context, n int) iter.Seq2[row, error] {
	return func(yield func(row, error) bool) {
		for i := range n {
			if !yield(row{I: i, Name: "item"}, nil) {
				return
			}
		}
	}
}

type sourceArgs struct {
	N int `json:"n"`
}

var sourceDesc = runtime.ServiceDesc{ServiceName: "Source", Methods: []runtime.MethodDesc{
	{Name: "rows", Mode: runtime.Stream, Handler: func(impl any, ctx context.Context, dec func(any) error) (any, error) {
		var a sourceArgs
		if err := dec(&a); err != nil {
			return nil, err
		}
		return runtime.ItemsOf(impl.(source).rows(ctx, a.N)), nil
	}},
	{Name: "row", Handler: func(impl any, ctx context.Context, dec func(any) error) (any, error) {
		var a sourceArgs
		if err := dec(&a); err != nil {
			return nil, err
		}
		return row{I: a.N, Name: "item"}, nil
	}},
}}

// streamServeMain is a server process of source: streamserve -topic T.
func streamServeMain(args []string) {
	fs := flag.NewFlagSet("streamserve", flag.ExitOnError)
	topic := fs.String("topic", "", "topic")
	url := fs.String("url", brokerURL(), "broker")
	fs.Parse(args)
	ctx, stop := signalContext()
	defer stop()
	s := runtime.NewServer(*url, *topic, runtime.WithLogger(quiet), runtime.WithMaxStreams(2048))
	s.RegisterService(&sourceDesc, source{})
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(sctx)
	}()
	go func() {
		c, err := runtime.Dial(*url, runtime.WithLogger(quiet))
		if err != nil {
			log.Fatal(err)
		}
		defer c.Close()
		for ctx.Err() == nil { // ready once a call gets through
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			err := c.Invoke(cctx, runtime.Request{Target: runtime.Target{Topic: *topic}, Method: "row", Args: &sourceArgs{}}, new(row))
			cancel()
			if err == nil {
				fmt.Println("ready")
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	if err := s.Serve(); err != nil && err != runtime.ErrServerClosed {
		log.Fatal(err)
	}
}

// streamResult is what a stream client process reports.
type streamResult struct {
	Items   int64   `json:"items"`
	Seconds float64 `json:"seconds"`
	Err     string  `json:"err,omitempty"`
}

// streamClientMain is a client process: streamclient -topic T -mode M -n N
// [-streams S]. Mode calls makes n sequential calls of one row each;
// stream reads one stream of n rows; streams reads S streams of n rows
// at once.
func streamClientMain(args []string) {
	fs := flag.NewFlagSet("streamclient", flag.ExitOnError)
	topic := fs.String("topic", "", "topic")
	mode := fs.String("mode", "stream", "calls, stream or streams")
	n := fs.Int("n", 100000, "items")
	streams := fs.Int("streams", 1, "streams at once")
	url := fs.String("url", brokerURL(), "broker")
	fs.Parse(args)
	c, err := runtime.Dial(*url, runtime.WithLogger(quiet))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	target := runtime.Target{Topic: *topic}
	fmt.Println("start")
	var items atomic.Int64
	var firstErr atomic.Value
	fail := func(err error) { firstErr.CompareAndSwap(nil, err.Error()) }
	read := func() {
		for r, err := range runtime.StreamOf[row](context.Background(), c, runtime.Request{Target: target, Service: &sourceDesc, Method: "rows", Args: &sourceArgs{N: *n}}) {
			if err != nil {
				fail(err)
				return
			}
			if r.I != int(items.Load()%int64(*n)) && *streams == 1 {
				fail(fmt.Errorf("row %d came where %d was due", r.I, items.Load()))
				return
			}
			items.Add(1)
		}
	}
	t0 := time.Now()
	switch *mode {
	case "calls":
		for i := range *n {
			var r row
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := c.Invoke(ctx, runtime.Request{Target: target, Service: &sourceDesc, Method: "row", Args: &sourceArgs{N: i}}, &r)
			cancel()
			if err != nil {
				fail(err)
				break
			}
			items.Add(1)
		}
	case "stream":
		read()
	case "streams":
		var wg sync.WaitGroup
		for range *streams {
			wg.Go(read)
		}
		wg.Wait()
	}
	res := streamResult{Items: items.Load(), Seconds: time.Since(t0).Seconds()}
	if e, ok := firstErr.Load().(string); ok {
		res.Err = e
	}
	json.NewEncoder(os.Stdout).Encode(res)
}

// streamRun is one client process's run, with the resident memory of the
// client and the server sampled every 100 ms.
type streamRun struct {
	streamResult
	client, server []float64 // MiB
}

// runStreamClient runs a client process against the server srv and
// samples both processes' memory until it reports.
func runStreamClient(srv *proc, args ...string) (streamRun, error) {
	p, err := start(append([]string{"streamclient"}, args...)...)
	if err != nil {
		return streamRun{}, err
	}
	defer p.stop()
	if err := p.expect("start"); err != nil {
		return streamRun{}, err
	}
	var run streamRun
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() { // owned here: ends with done
		defer close(sampled)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			c, _ := residentMB(p.cmd.Process.Pid)
			s, _ := residentMB(srv.cmd.Process.Pid)
			run.client, run.server = append(run.client, c), append(run.server, s)
			select {
			case <-tick.C:
			case <-done:
				return
			}
		}
	}()
	ok := p.lines.Scan()
	close(done)
	<-sampled
	if !ok {
		return run, fmt.Errorf("stream client ended without a result")
	}
	if err := json.Unmarshal(p.lines.Bytes(), &run.streamResult); err != nil {
		return run, err
	}
	if run.Err != "" {
		return run, fmt.Errorf("stream client: %s", run.Err)
	}
	return run, nil
}

// runStreams measures the streams section.
func runStreams(cfg config, w io.Writer, md *strings.Builder, topic func(string) string, _ int) error {
	t := topic("streams")
	srv, err := start("streamserve", "-topic", t)
	if err != nil {
		return err
	}
	defer srv.stop()
	if err := srv.expect("ready"); err != nil {
		return err
	}
	items, calls, long, many, manyN := 100000, 100000, 10000000, 1000, 1000
	if cfg.quick {
		items, calls, long, many, manyN = 20000, 2000, 300000, 100, 1000
	}

	// 1. One stream of n items, against n sequential calls of one each.
	var ratios []float64
	var streamRates, callRates []float64
	for rep := range max(cfg.reps, 1) {
		fmt.Fprintf(w, "streams: rep %d: a stream of %d items ", rep+1, items)
		s, err := runStreamClient(srv, "-topic", t, "-mode", "stream", "-n", fmt.Sprint(items))
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%.0f/s; %d calls ", float64(s.Items)/s.Seconds, calls)
		c, err := runStreamClient(srv, "-topic", t, "-mode", "calls", "-n", fmt.Sprint(calls))
		if err != nil {
			return err
		}
		sr, cr := float64(s.Items)/s.Seconds, float64(c.Items)/c.Seconds
		fmt.Fprintf(w, "%.0f/s: %.1fx\n", cr, sr/cr)
		streamRates, callRates, ratios = append(streamRates, sr), append(callRates, cr), append(ratios, sr/cr)
	}

	// 2. Many streams at once, and as many four times as long: what they
	// hold does not grow with their length.
	var ms []streamRun
	for _, n := range []int{manyN, 4 * manyN} {
		fmt.Fprintf(w, "streams: %d streams of %d items at once ", many, n)
		m, err := runStreamClient(srv, "-topic", t, "-mode", "streams", "-n", fmt.Sprint(n), "-streams", fmt.Sprint(many))
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "in %.1fs, client RSS at most %.0f MiB, server %.0f MiB\n", m.Seconds, slices.Max(m.client), slices.Max(m.server))
		ms = append(ms, m)
	}

	// 3. One very long stream.
	fmt.Fprintf(w, "streams: one stream of %d items ", long)
	l, err := runStreamClient(srv, "-topic", t, "-mode", "stream", "-n", fmt.Sprint(long))
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "in %.1fs, %.0f/s\n", l.Seconds, float64(l.Items)/l.Seconds)

	fmt.Fprintf(md, "## Streams\n\n`go run ./bench -streams`. A client process and a server process of their own, against the local broker; "+
		"each item a small object (`{\"i\": 7, \"name\": \"item\"}`); the default window (%d items). "+
		"Resident memory (RSS) of both processes sampled every 100 ms.\n\n", runtime.DefaultStreamWindow)
	fmt.Fprintf(md, "| | items/s | ratio |\n|---|---|---|\n")
	fmt.Fprintf(md, "| one stream of %d items | %s | %.1fx (%s) |\n", items, fmtRate(median(streamRates)), median(ratios), fmtRange(ratios))
	fmt.Fprintf(md, "| %d sequential calls, one item each | %s | 1 |\n\n", calls, fmtRate(median(callRates)))
	fmt.Fprintf(md, "Target: the stream at 10x the calls or more. Medians of %d repetitions, each the stream then the calls; the ratio's least and most in brackets.\n\n", max(cfg.reps, 1))
	fmt.Fprintf(md, "| | items | seconds | items/s | client RSS, MiB: start, most, end | server RSS, MiB: start, most, end |\n|---|---|---|---|---|---|\n")
	for i, m := range ms {
		fmt.Fprintf(md, "| %d streams of %d items at once | %d | %.1f | %s | %s | %s |\n", many, manyN<<(2*i), m.Items, m.Seconds, fmtRate(float64(m.Items)/m.Seconds), fmtRSS(m.client), fmtRSS(m.server))
	}
	fmt.Fprintf(md, "| one stream of %d items | %d | %.1f | %s | %s | %s |\n\n", long, l.Items, l.Seconds, fmtRate(float64(l.Items)/l.Seconds), fmtRSS(l.client), fmtRSS(l.server))
	fmt.Fprintf(md, "The long stream's RSS, each tenth of its run (client / server, MiB): %s.\n\n", fmtTenths(l.client, l.server))
	fmt.Fprintf(md, "Targets: the streams at once complete, with memory that does not grow with their length (each holds at most a window of items "+
		"and its server %d encoded ahead); the long stream's RSS flat on both sides.\n\n", 64)
	return nil
}

// fmtRange is the least and most of xs.
func fmtRange(xs []float64) string {
	return fmt.Sprintf("%.1f-%.1f", slices.Min(xs), slices.Max(xs))
}

// fmtRSS is the first, the largest and the last of samples.
func fmtRSS(samples []float64) string {
	if len(samples) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f, %.0f, %.0f", samples[0], slices.Max(samples), samples[len(samples)-1])
}

// fmtTenths is client and server samples at each tenth of a run.
func fmtTenths(client, server []float64) string {
	var parts []string
	for i := 1; i <= 10; i++ {
		j := min(len(client)-1, i*len(client)/10)
		if j < 0 {
			return "-"
		}
		parts = append(parts, fmt.Sprintf("%.0f/%.0f", client[j], server[min(j, len(server)-1)]))
	}
	return strings.Join(parts, ", ")
}
