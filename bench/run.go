package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// config of a benchmark run.
type config struct {
	reps     int
	duration time.Duration
	warmup   time.Duration
	out      string
	quick    bool // a smoke run: the comparison only, at 1 and 64 in flight
	ab       bool // the sequential latency A/B only, printed
	cluster  []string
}

var allImpls = []string{"amqprpc", "amqprpc-quorum", "baseline", "floor"}

// measurement names what one client process measures.
type measurement struct {
	name     string
	inflight int
	latency  bool
}

func runMain(args []string) {
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	var cfg config
	fs.IntVar(&cfg.reps, "reps", 3, "repetitions of each measurement; the table shows medians")
	fs.DurationVar(&cfg.duration, "duration", 3*time.Second, "measured window of each run, after the warm-up")
	fs.DurationVar(&cfg.warmup, "warmup", time.Second, "warm-up of each run")
	fs.StringVar(&cfg.out, "out", "bench/RESULTS.md", "where to write the results; empty for nowhere")
	fs.BoolVar(&cfg.quick, "quick", false, "a short smoke run")
	fs.BoolVar(&cfg.ab, "ab", false, "measure only the sequential latency A/B of amqprpc and baseline, for 4x the duration, and print it")
	observe := fs.Bool("observe", false, "measure only the interceptors and OpenTelemetry section, and print it")
	replyPath := fs.Bool("replypath", false, "measure only the section on a plain client's reply path, and print it")
	streamsOnly := fs.Bool("streams", false, "measure only the streams section, and print it")
	pathsOnly := fs.Bool("paths", false, "measure only the section on the paths users run, side by side with the hand-written RPC, and print it")
	clusterURLs := fs.String("cluster", "", "the AMQP URLs of a cluster's nodes, comma-separated (scripts/cluster.sh urls), for the cluster section")
	fs.Parse(args)
	if *clusterURLs != "" {
		cfg.cluster = strings.Split(*clusterURLs, ",")
	}
	var alone section
	switch {
	case *observe:
		alone = runObserve
	case *replyPath:
		alone = runReplyPath
	case *pathsOnly:
		alone = runPaths
	case *streamsOnly:
		alone = runStreams
	}
	if alone != nil {
		if err := runAlone(cfg, os.Stdout, alone); err != nil {
			log.Fatal(err)
		}
		return
	}
	if cfg.ab {
		if err := runAB(cfg, os.Stdout); err != nil {
			log.Fatal(err)
		}
		return
	}
	report, err := run(cfg, os.Stdout)
	if err != nil {
		log.Fatal(err)
	}
	if cfg.out != "" {
		if err := os.WriteFile(cfg.out, []byte(report), 0o666); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("\nwrote %s\n", cfg.out)
	}
}

// runAB measures the sequential latency A/B alone.
func runAB(cfg config, w io.Writer) error {
	stamp := time.Now().UnixNano()
	var topics []string
	defer func() { cleanup(topics) }()
	var srv []*servers
	defer func() {
		for _, s := range srv {
			s.stop()
		}
	}()
	for _, impl := range []string{"amqprpc", "baseline"} {
		t := fmt.Sprintf("bench.ab.%s.%d", impl, stamp)
		topics = append(topics, t)
		s, err := startServers(impl, "default", t, 1, 0)
		if err != nil {
			return fmt.Errorf("start %s server: %w", impl, err)
		}
		srv = append(srv, s)
	}
	a, b, n, err := latencyAB(topics[0], topics[1], 4*cfg.duration)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%d calls each: amqprpc %s, baseline %s (p50 | p90 | p99), p50 ratio %.3f\n", n, fmtQuantiles(a), fmtQuantiles(b), a[0]/b[0])
	return nil
}

// A section measures its implementations, printing progress to w, and
// writes its part of the report to md; topic names a topic for the run,
// broker is the pid of the broker.
type section func(cfg config, w io.Writer, md *strings.Builder, topic func(string) string, broker int) error

// runAlone measures section s alone, and prints it.
func runAlone(cfg config, w io.Writer, s section) error {
	broker, err := brokerPID()
	if err != nil {
		return err
	}
	stamp := time.Now().UnixNano()
	var topics []string
	defer func() { cleanup(topics) }()
	topic := func(name string) string {
		t := fmt.Sprintf("bench.%s.%d", name, stamp)
		topics = append(topics, t)
		return t
	}
	var md strings.Builder
	if err := s(cfg, w, &md, topic, broker); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n%s", md.String())
	return nil
}

// run runs the benchmark, printing progress and tables to w, and returns
// the Markdown report.
func run(cfg config, w io.Writer) (string, error) {
	broker, err := brokerPID()
	if err != nil {
		return "", err
	}
	stamp := time.Now().UnixNano()
	var topics []string
	topic := func(name string) string {
		t := fmt.Sprintf("bench.%s.%d", name, stamp)
		topics = append(topics, t)
		return t
	}
	defer func() { cleanup(topics) }()

	measurements := []measurement{{"latency", 1, true}, {"tp1", 1, false}, {"tp8", 8, false}, {"tp64", 64, false}, {"tp256", 256, false}}
	if cfg.quick {
		measurements = []measurement{{"latency", 1, true}, {"tp64", 64, false}}
	}

	var md strings.Builder
	fmt.Fprintf(&md, "# amqprpc benchmark\n\n`make bench` (`go run ./bench -reps %d -duration %v`), %s.\n\n", cfg.reps, cfg.duration, time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(&md, "Machine: %s.\n\n", machine())
	fmt.Fprintf(&md, "Each number is the median of %d runs, interleaved and rotated (A B C, B C A, C A B, ...); each run is a client process "+
		"and server processes of their own, against the local broker: %v measured after a %v warm-up. "+
		"CPU per call is the CPU time of each process in the measured window over the calls made, at 64 calls in flight.\n\n", cfg.reps, cfg.duration, cfg.warmup)

	// 1. amqprpc, baseline and floor.
	srv := make(map[string]*servers)
	defer func() {
		for _, s := range srv {
			s.stop()
		}
	}()
	for _, impl := range allImpls {
		s, err := startServers(impl, "default", topic(impl), 1, 0)
		if err != nil {
			return "", fmt.Errorf("start %s server: %w", impl, err)
		}
		srv[impl] = s
	}
	res, err := series(cfg, w, measurements, allImpls, func(impl string, m measurement) (result, error) {
		return measure(impl, "default", srv[impl], m.inflight, cfg, m.latency, broker)
	})
	if err != nil {
		return "", err
	}
	writeComparison(&md, w, res, measurements)
	if !cfg.quick {
		fmt.Fprintf(w, "latency A/B ")
		a, b, n, err := latencyAB(srv["amqprpc"].topic, srv["baseline"].topic, 4*cfg.duration)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(w, "amqprpc p50 %s, baseline p50 %s, ratio %.2f\n", fmtMicros(a[0]), fmtMicros(b[0]), a[0]/b[0])
		fmt.Fprintf(&md, "### Sequential latency, A/B\n\nOne client process calling amqprpc and baseline in turn, in blocks of 200 calls, "+
			"for %v: finer than the runs above, as the machine's drift weighs on both alike. %d calls each.\n\n", 4*cfg.duration, n)
		fmt.Fprintf(&md, "| | p50 | p90 | p99 |\n|---|---|---|---|\n| amqprpc | %s |\n| baseline | %s |\n| amqprpc/baseline | %.2f | %.2f | %.2f |\n\n",
			fmtQuantiles(a), fmtQuantiles(b), a[0]/b[0], a[1]/b[1], a[2]/b[2])
	}
	for _, s := range srv {
		s.stop()
	}
	clear(srv)

	// 1b. The paths users run, side by side with the hand-written RPC.
	if err := runPaths(cfg, w, &md, topic, broker); err != nil {
		return "", err
	}

	// 2. oslo.messaging: Go and Python peers.
	if err := runOslo(cfg, w, &md, topic, broker); err != nil {
		return "", err
	}

	// 2b. Interceptors and OpenTelemetry.
	if err := runObserve(cfg, w, &md, topic, broker); err != nil {
		return "", err
	}

	// 2c. A plain client's reply path.
	if err := runReplyPath(cfg, w, &md, topic, broker); err != nil {
		return "", err
	}

	// 2d. Streams.
	if err := runStreams(cfg, w, &md, topic, broker); err != nil {
		return "", err
	}

	// 3. A cluster: servers on one node, clients on another.
	if len(cfg.cluster) >= 2 {
		if err := runCluster(cfg, w, &md, stamp); err != nil {
			return "", err
		}
	}
	if cfg.quick {
		return md.String(), nil
	}

	// 4. amqprpc with each delivery guarantee on and off.
	variantNames := []string{"safe", "safe-no-request-confirms", "safe-no-reply-confirms", "fast", "fast-no-ack-after-reply", "no-batching"}
	for _, v := range variantNames {
		s, err := startServers("amqprpc", v, topic("v-"+v), 1, 0)
		if err != nil {
			return "", err
		}
		srv[v] = s
	}
	vms := []measurement{{"latency", 1, true}, {"tp64", 64, false}, {"tp256", 256, false}}
	vres, err := series(cfg, w, vms, variantNames, func(v string, m measurement) (result, error) {
		return measure("amqprpc", v, srv[v], m.inflight, cfg, m.latency, broker)
	})
	if err != nil {
		return "", err
	}
	for _, s := range srv {
		s.stop()
	}
	clear(srv)
	writeVariants(&md, w, vres, variantNames)

	// 5. Scale-out: two and four server processes on one topic.
	var scale []string // "impl xN"
	for _, n := range []int{1, 2, 4} {
		for _, impl := range []string{"amqprpc", "baseline"} {
			name := fmt.Sprintf("%s x%d", impl, n)
			s, err := startServers(impl, "default", topic(fmt.Sprintf("scale-%s-%d", impl, n)), n, 0)
			if err != nil {
				return "", err
			}
			srv[name] = s
			scale = append(scale, name)
		}
	}
	sms := []measurement{{"latency", 1, true}, {"tp64", 64, false}}
	sres, err := series(cfg, w, sms, scale, func(name string, m measurement) (result, error) {
		impl, _, _ := strings.Cut(name, " ")
		return measure(impl, "default", srv[name], m.inflight, cfg, m.latency, broker)
	})
	if err != nil {
		return "", err
	}
	for _, s := range srv {
		s.stop()
	}
	clear(srv)
	fmt.Fprintf(&md, "## Scale-out\n\nServer processes on one topic, one client; on 2 cores they share the CPU with the client and the broker.\n\n")
	fmt.Fprintf(&md, "| implementation | servers | p50 | calls/s at 64 in flight |\n|---|---|---|---|\n")
	for _, name := range scale {
		impl, n, _ := strings.Cut(name, " x")
		fmt.Fprintf(&md, "| %s | %s | %s | %s |\n", impl, n, fmtMicros(sres.med(name, "latency", p50)), fmtRate(sres.med(name, "tp64", rate)))
	}
	md.WriteString("\n")

	// 6. Memory: 10,000 calls in flight from one client, a server with prefetch 1,000.
	s, err := startServers("amqprpc", "default", topic("memory"), 1, 1000)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(w, "memory: 10000 in flight ")
	r, err := measure("amqprpc", "default", s, 10000, cfg, false, broker)
	serverRSS := s.rss()
	s.stop()
	if err != nil {
		return "", err
	}
	fmt.Fprintf(w, "%8.0f calls/s, client %.0f MiB, server %.0f MiB\n", float64(r.Calls)/r.Seconds, r.MaxRSS, serverRSS)
	fmt.Fprintf(&md, "## Memory\n\nOne amqprpc client with 10,000 calls in flight (10,000 goroutines calling), one server with prefetch 1,000: "+
		"%s calls/s, %d errors; resident size at the end of the window: client %.0f MiB, server %.0f MiB.\n",
		fmtRate(float64(r.Calls)/r.Seconds), r.Errors, r.MaxRSS, serverRSS)
	return md.String(), nil
}

// series measures each of ms against each of names, reps times,
// interleaved and rotated (A B C, B C A, C A B, ...) so that no name is
// always measured first or last, printing progress to w; measure runs one
// client process. It returns the results by name and measurement.
func series(cfg config, w io.Writer, ms []measurement, names []string, measure func(name string, m measurement) (result, error)) (results, error) {
	res := make(results)
	for _, n := range names {
		res[n] = make(map[string][]result)
	}
	for rep := range cfg.reps {
		for _, m := range ms {
			for i := range names {
				n := names[(i+rep)%len(names)]
				fmt.Fprintf(w, "rep %d/%d %-8s %-26s ", rep+1, cfg.reps, m.name, n)
				r, err := measure(n, m)
				if err != nil {
					return nil, err
				}
				fmt.Fprintf(w, "%8.0f calls/s", rate(r))
				if r.Calls > 0 {
					perCall := func(cpu float64) float64 { return cpu / float64(r.Calls) * 1e6 }
					fmt.Fprintf(w, ", CPU/call: client %.0fµs, server %.0fµs, broker %.0fµs", perCall(r.CPU), perCall(r.ServerCPU), perCall(r.BrokerCPU))
				}
				fmt.Fprintln(w)
				res[n][m.name] = append(res[n][m.name], r)
			}
		}
	}
	return res, nil
}

// results are a series' results, by name and measurement.
type results map[string]map[string][]result

// med is the median of f over the results of name's measurement m.
func (r results) med(name, m string, f func(result) float64) float64 {
	return median(field(r[name][m], f))
}

// field extracts a number from each result.
func field(rs []result, f func(result) float64) []float64 {
	xs := make([]float64, len(rs))
	for i, r := range rs {
		xs[i] = f(r)
	}
	return xs
}

func rate(r result) float64 { return float64(r.Calls) / r.Seconds }
func p50(r result) float64  { return r.P50 }
func p90(r result) float64  { return r.P90 }
func p99(r result) float64  { return r.P99 }

func perCall(cpu func(result) float64) func(result) float64 {
	return func(r result) float64 { return cpu(r) / float64(max(r.Calls, 1)) * 1e6 }
}

var (
	clientCPU = perCall(func(r result) float64 { return r.CPU })
	serverCPU = perCall(func(r result) float64 { return r.ServerCPU })
	brokerCPU = perCall(func(r result) float64 { return r.BrokerCPU })
)

func writeComparison(md *strings.Builder, w io.Writer, res results, ms []measurement) {
	med := res.med
	fmt.Fprintf(md, "## amqprpc, baseline, floor\n\n")
	fmt.Fprintf(md, "- **amqprpc**: the generated Calculator client and server (`Add`), default options: the topic's queue is a durable classic queue.\n")
	fmt.Fprintf(md, "- **amqprpc-quorum**: the same with a quorum queue (`runtime.WithQueueType(runtime.QueueQuorum)`).\n")
	fmt.Fprintf(md, "- **baseline**: a hand-written amqp091-go RPC of the same call: one connection, requests to a topic exchange, replies over direct reply-to matched by correlation id, a server acking after replying, prefetch 256 (`bench/impls.go`).\n")
	fmt.Fprintf(md, "- **floor**: a ping-pong of two 8-byte messages through the broker: no JSON, no acks, default exchange.\n\n")
	header := "| | p50 | p90 | p99 |"
	sep := "|---|---|---|---|"
	for _, m := range ms {
		if !m.latency {
			header += fmt.Sprintf(" calls/s at %d |", m.inflight)
			sep += "---|"
		}
	}
	header += " CPU/call client | server | broker |"
	sep += "---|---|---|"
	fmt.Fprintf(md, "%s\n%s\n", header, sep)
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\nimpl\tp50\tp90\tp99\t"+strings.Join(tpNames(ms), "\t")+"\tcpu/call client\tserver\tbroker\t")
	cpuAt := "tp64"
	for _, impl := range allImpls {
		row := []string{impl, fmtMicros(med(impl, "latency", p50)), fmtMicros(med(impl, "latency", p90)), fmtMicros(med(impl, "latency", p99))}
		for _, m := range ms {
			if !m.latency {
				row = append(row, fmtRate(med(impl, m.name, rate)))
			}
		}
		row = append(row, fmtMicros(med(impl, cpuAt, clientCPU)), fmtMicros(med(impl, cpuAt, serverCPU)), fmtMicros(med(impl, cpuAt, brokerCPU)))
		fmt.Fprintf(md, "| %s |\n", strings.Join(row, " | "))
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	tw.Flush()

	ratio := func(a, b string, m string, f func(result) float64) float64 { return med(a, m, f) / med(b, m, f) }
	fmt.Fprintf(md, "\nRatios, from this run:\n\n| | amqprpc/baseline | amqprpc/floor | baseline/floor | amqprpc-quorum/baseline |\n|---|---|---|---|---|\n")
	fmt.Fprintf(w, "\nratio\tamqprpc/baseline\tamqprpc/floor\tbaseline/floor\tamqprpc-quorum/baseline\n")
	for _, m := range ms {
		if m.latency {
			continue
		}
		line := fmt.Sprintf("throughput at %d in flight | %.2f | %.2f | %.2f | %.2f", m.inflight, ratio("amqprpc", "baseline", m.name, rate), ratio("amqprpc", "floor", m.name, rate), ratio("baseline", "floor", m.name, rate), ratio("amqprpc-quorum", "baseline", m.name, rate))
		fmt.Fprintf(md, "| %s |\n", line)
		fmt.Fprintln(w, strings.ReplaceAll(line, " | ", "\t"))
	}
	lines := []string{
		fmt.Sprintf("sequential p50 latency | %.2f | %.2f | %.2f | %.2f", ratio("amqprpc", "baseline", "latency", p50), ratio("amqprpc", "floor", "latency", p50), ratio("baseline", "floor", "latency", p50), ratio("amqprpc-quorum", "baseline", "latency", p50)),
		fmt.Sprintf("sequential p99 latency | %.2f | %.2f | %.2f | %.2f", ratio("amqprpc", "baseline", "latency", p99), ratio("amqprpc", "floor", "latency", p99), ratio("baseline", "floor", "latency", p99), ratio("amqprpc-quorum", "baseline", "latency", p99)),
		fmt.Sprintf("CPU per call, client + server | %.2f | %.2f | %.2f | %.2f",
			(med("amqprpc", cpuAt, clientCPU)+med("amqprpc", cpuAt, serverCPU))/(med("baseline", cpuAt, clientCPU)+med("baseline", cpuAt, serverCPU)),
			(med("amqprpc", cpuAt, clientCPU)+med("amqprpc", cpuAt, serverCPU))/(med("floor", cpuAt, clientCPU)+med("floor", cpuAt, serverCPU)),
			(med("baseline", cpuAt, clientCPU)+med("baseline", cpuAt, serverCPU))/(med("floor", cpuAt, clientCPU)+med("floor", cpuAt, serverCPU)),
			(med("amqprpc-quorum", cpuAt, clientCPU)+med("amqprpc-quorum", cpuAt, serverCPU))/(med("baseline", cpuAt, clientCPU)+med("baseline", cpuAt, serverCPU))),
		fmt.Sprintf("CPU per call, broker | %.2f | %.2f | %.2f | %.2f", ratio("amqprpc", "baseline", cpuAt, brokerCPU), ratio("amqprpc", "floor", cpuAt, brokerCPU), ratio("baseline", "floor", cpuAt, brokerCPU), ratio("amqprpc-quorum", "baseline", cpuAt, brokerCPU)),
	}
	for _, line := range lines {
		fmt.Fprintf(md, "| %s |\n", line)
		fmt.Fprintln(w, strings.ReplaceAll(line, " | ", "\t"))
	}
	md.WriteString("\n")
}

func tpNames(ms []measurement) []string {
	var names []string
	for _, m := range ms {
		if !m.latency {
			names = append(names, fmt.Sprintf("tp@%d", m.inflight))
		}
	}
	return names
}

func writeVariants(md *strings.Builder, w io.Writer, res results, names []string) {
	med := res.med
	fmt.Fprintf(md, "## What each delivery guarantee costs\n\namqprpc with its guarantees on and off (`runtime.WithProfile`, `WithRequestConfirms`, `WithReplyConfirms`, `WithAckAfterReply`), and with batching off (`WithBatching(false)`: what a peer that does not batch gets); CPU per call at 64 in flight.\n\n")
	fmt.Fprintf(md, "| variant | request confirms | reply confirms | ack after reply | batching | p50 | p99 | calls/s at 64 | calls/s at 256 | CPU/call client + server | broker |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	knobs := map[string]string{
		"safe":                     "yes | yes | yes | yes",
		"safe-no-request-confirms": "no | yes | yes | yes",
		"safe-no-reply-confirms":   "yes | no | yes | yes",
		"fast":                     "no | no | yes | yes",
		"fast-no-ack-after-reply":  "no | no | no | yes",
		"no-batching":              "no | no | yes | no",
	}
	fmt.Fprintf(w, "\nvariant\tp50\ttp@64\ttp@256\n")
	for _, v := range names {
		fmt.Fprintf(md, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", v, knobs[v], fmtMicros(med(v, "latency", p50)), fmtMicros(med(v, "latency", p99)),
			fmtRate(med(v, "tp64", rate)), fmtRate(med(v, "tp256", rate)),
			fmtMicros(med(v, "tp64", clientCPU)+med(v, "tp64", serverCPU)), fmtMicros(med(v, "tp64", brokerCPU)))
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", v, fmtMicros(med(v, "latency", p50)), fmtRate(med(v, "tp64", rate)), fmtRate(med(v, "tp256", rate)))
	}
	md.WriteString("\n")
}

// runCluster measures every implementation with its servers on the
// cluster's second node and its clients on the first, so that each request
// and reply crosses between nodes, and writes the section.
func runCluster(cfg config, w io.Writer, md *strings.Builder, stamp int64) error {
	serverURL, clientURL := cfg.cluster[1], cfg.cluster[0]
	var topics []string
	defer func() { cleanupAt(serverURL, topics) }()
	srv := make(map[string]*servers)
	defer func() {
		for _, s := range srv {
			s.stop()
		}
	}()
	for _, impl := range allImpls {
		t := fmt.Sprintf("bench.cluster-%s.%d", impl, stamp)
		topics = append(topics, t)
		s, err := startServersAt(serverURL, impl, "default", t, 1, 0)
		if err != nil {
			return fmt.Errorf("start %s server on the cluster: %w", impl, err)
		}
		srv[impl] = s
	}
	pids, err := clusterPIDs(len(cfg.cluster))
	if err != nil {
		return err
	}
	brokers := func() float64 {
		var t float64
		for _, pid := range pids {
			t += mustCPU(pid)
		}
		return t
	}
	ms := []measurement{{"latency", 1, true}, {"tp64", 64, false}}
	res, err := series(cfg, w, ms, allImpls, func(impl string, m measurement) (result, error) {
		return measureAt(clientURL, impl, "default", srv[impl], m.inflight, cfg, m.latency, brokers)
	})
	if err != nil {
		return err
	}
	med := res.med
	fmt.Fprintf(md, "## A cluster\n\nThe same, on a three-node cluster of the machine's own (`scripts/cluster.sh`): every server on the second node, every client on the first, so that each request and each reply crosses from node to node; a queue lives on the node of the server that declared it (a quorum queue's leader, with followers on the other two). Broker CPU is the three nodes'.\n\n")
	fmt.Fprintf(md, "| | p50 | p90 | p99 | calls/s at 64 | CPU/call client | server | brokers |\n|---|---|---|---|---|---|---|---|\n")
	for _, impl := range allImpls {
		fmt.Fprintf(md, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", impl, fmtMicros(med(impl, "latency", p50)), fmtMicros(med(impl, "latency", p90)), fmtMicros(med(impl, "latency", p99)),
			fmtRate(med(impl, "tp64", rate)), fmtMicros(med(impl, "tp64", clientCPU)), fmtMicros(med(impl, "tp64", serverCPU)), fmtMicros(med(impl, "tp64", brokerCPU)))
	}
	ratio := func(a, b, m string, f func(result) float64) float64 { return med(a, m, f) / med(b, m, f) }
	fmt.Fprintf(md, "\n| on the cluster | amqprpc/baseline | amqprpc-quorum/baseline | amqprpc/floor |\n|---|---|---|---|\n")
	fmt.Fprintf(md, "| throughput at 64 in flight | %.2f | %.2f | %.2f |\n", ratio("amqprpc", "baseline", "tp64", rate), ratio("amqprpc-quorum", "baseline", "tp64", rate), ratio("amqprpc", "floor", "tp64", rate))
	fmt.Fprintf(md, "| sequential p50 latency | %.2f | %.2f | %.2f |\n", ratio("amqprpc", "baseline", "latency", p50), ratio("amqprpc-quorum", "baseline", "latency", p50), ratio("amqprpc", "floor", "latency", p50))
	fmt.Fprintf(md, "| sequential p99 latency | %.2f | %.2f | %.2f |\n\n", ratio("amqprpc", "baseline", "latency", p99), ratio("amqprpc-quorum", "baseline", "latency", p99), ratio("amqprpc", "floor", "latency", p99))
	return nil
}

// clusterPIDs returns the operating system pids of the cluster's n nodes.
func clusterPIDs(n int) ([]int, error) {
	var pids []int
	for i := 1; i <= n; i++ {
		out, err := exec.Command("scripts/cluster.sh", "pid", strconv.Itoa(i)).Output()
		if err != nil {
			return nil, fmt.Errorf("the pid of cluster node %d: %w", i, err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
		if err != nil {
			return nil, err
		}
		pids = append(pids, pid)
	}
	return pids, nil
}
