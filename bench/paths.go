package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// The section "The paths users run, side by side": amqprpc as services run
// it (one call at a time, a quorum queue, OpenTelemetry, Safe, batching
// off as a peer that does not batch gets it, oslo mode) interleaved with
// the hand-written RPC in the same rotation, so that each ratio is of runs
// made side by side, not of sections measured minutes apart on a machine
// that drifts.

// path is a row of the section: an implementation and its variant.
type path struct {
	name, impl, variant string
	target              string // what the row should reach, as the table says it
}

var paths = []path{
	{"hand-written", "baseline", "default", ""},
	{"default", "amqprpc", "default", "p50 and p99 at 1 <= 1.0x, calls/s at 1 >= 1.0x"},
	{"quorum", "amqprpc", "quorum", ">= 2.5x at 64"},
	{"otel", "amqprpc", "otel", "costs <= 10% of default at 64"},
	{"safe", "amqprpc", "safe", ">= 1.5x at 64"},
	{"no-batching", "amqprpc", "no-batching", ">= 1.2x at 64; p99 at 1 <= 1.1x"},
	{"oslo", "amqprpc", "oslo", ">= 1.0x at 64 (Go client and Go server)"},
}

// runPaths measures the paths and writes the section.
func runPaths(cfg config, w io.Writer, md *strings.Builder, topic func(string) string, broker int) error {
	srv := make(map[string]*servers)
	defer func() {
		for _, s := range srv {
			s.stop()
		}
	}()
	names := make([]string, len(paths))
	byName := make(map[string]path)
	for i, p := range paths {
		s, err := startServers(p.impl, p.variant, topic("paths-"+p.name), 1, 0)
		if err != nil {
			return fmt.Errorf("start %s server: %w", p.name, err)
		}
		srv[p.name], names[i], byName[p.name] = s, p.name, p
	}
	ms := []measurement{{"latency", 1, true}, {"tp64", 64, false}}
	res, err := series(cfg, w, ms, names, func(name string, m measurement) (result, error) {
		p := byName[name]
		return measure(p.impl, p.variant, srv[name], m.inflight, cfg, m.latency, broker)
	})
	if err != nil {
		return err
	}
	// ratio is the median, least and most over the repetitions of name's
	// f in measurement m over the hand-written RPC's in the same
	// repetition.
	ratio := func(name, m string, f func(result) float64) string {
		a, b := res[name][m], res["hand-written"][m]
		var rs []float64
		for i := range min(len(a), len(b)) {
			if f(b[i]) > 0 {
				rs = append(rs, f(a[i])/f(b[i]))
			}
		}
		if len(rs) == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f (%.2f-%.2f)", median(rs), slices.Min(rs), slices.Max(rs))
	}
	med := res.med
	fmt.Fprintf(md, "## The paths users run, side by side\n\n"+
		"amqprpc as services run it, each path a server and a client process of its own, in one rotation with the hand-written RPC "+
		"(the baseline of bench/impls.go): one call at a time (latency, calls/s at 1), and 64 in flight. Ratios are each repetition's over the "+
		"hand-written RPC's in the same repetition: the median, and the least and the most (%d repetitions).\n\n"+
		"- **quorum**: the topic's queue a quorum queue; **otel**: `otelamqprpc` on both sides, every span recorded; "+
		"**safe**: `WithProfile(Safe)`; **no-batching**: `WithBatching(false)`, one call a message and one reply a message, "+
		"what a peer that does not batch gets; **oslo**: `WithOslo`, oslo.messaging's protocol, Go client and Go server.\n\n", cfg.reps)
	fmt.Fprintf(md, "| path | p50 at 1 | p99 at 1 | calls/s at 1 | calls/s at 64 | p50 at 1 / hand-written | p99 at 1 / hand-written | calls/s at 1 / hand-written | calls/s at 64 / hand-written | CPU/call client, server at 64 | target |\n"+
		"|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, p := range paths {
		fmt.Fprintf(md, "| %s | %s | %s | %s | %s |", p.name, fmtMicros(med(p.name, "latency", p50)), fmtMicros(med(p.name, "latency", p99)),
			fmtRate(med(p.name, "latency", rate)), fmtRate(med(p.name, "tp64", rate)))
		if p.name == "hand-written" {
			fmt.Fprintf(md, " 1 | 1 | 1 | 1 |")
		} else {
			fmt.Fprintf(md, " %s | %s | %s | %s |", ratio(p.name, "latency", p50), ratio(p.name, "latency", p99),
				ratio(p.name, "latency", rate), ratio(p.name, "tp64", rate))
		}
		fmt.Fprintf(md, " %s, %s | %s |\n", fmtMicros(med(p.name, "tp64", clientCPU)), fmtMicros(med(p.name, "tp64", serverCPU)), p.target)
	}
	var otel []float64
	for i := range min(len(res["otel"]["tp64"]), len(res["default"]["tp64"])) {
		if d := rate(res["default"]["tp64"][i]); d > 0 {
			otel = append(otel, 1-rate(res["otel"]["tp64"][i])/d)
		}
	}
	if len(otel) == 0 {
		return nil
	}
	fmt.Fprintf(md, "\nWhat OpenTelemetry costs the default's calls/s at 64 in flight, each repetition against the default's in it: %.0f%% (%.0f%% to %.0f%%).\n\n",
		100*median(otel), 100*slices.Min(otel), 100*slices.Max(otel))
	return nil
}
