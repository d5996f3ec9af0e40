package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// The oslo.messaging section: amqprpc's oslo.messaging protocol
// (runtime.WithOslo) against the real library, Debian's
// python3-oslo.messaging, run by bench/oslo.py. Each pair is a client
// process and a server process on a topic of its own; the runs of the
// pairs interleave as in the other sections.

// osloExchange is the control exchange of the section (bench/oslo.py's
// EXCHANGE).
const osloExchange = "bench-oslo"

const python = "/usr/bin/python3"

// floorName is the broker's ping-pong (the floor implementation) in the
// section's tables.
const floorName = "broker floor"

// osloScript is bench/oslo.py, from the repository's root (make bench) or
// from bench/ (go test).
func osloScript() string {
	if _, err := os.Stat("bench/oslo.py"); err == nil {
		return "bench/oslo.py"
	}
	return "oslo.py"
}

// osloPair is a client and a server, each Go or Python.
type osloPair struct{ name, client, server string }

var osloPairs = []osloPair{
	{"Go -> Go", "go", "go"},
	{"Python -> Python", "py", "py"},
	{"Go -> Python", "go", "py"},
	{"Python -> Go", "py", "go"},
}

// osloMissing returns why the section cannot run, or "".
func osloMissing() string {
	if out, err := exec.Command(python, "-c", "import oslo_messaging").CombinedOutput(); err != nil {
		return fmt.Sprintf("%s cannot import oslo_messaging (%v: %s); scripts/python-oslo.sh installs it", python, err, strings.TrimSpace(string(out)))
	}
	return ""
}

// runOslo measures the pairs and writes the section.
func runOslo(cfg config, w io.Writer, md *strings.Builder, topic func(string) string, broker int) error {
	fmt.Fprintf(md, "## oslo.messaging\n\n")
	if why := osloMissing(); why != "" {
		fmt.Fprintf(w, "oslo section skipped: %s\n", why)
		fmt.Fprintf(md, "Not measured: %s.\n\n", why)
		return nil
	}
	srv := make(map[string]*servers)
	defer func() {
		for _, s := range srv {
			s.stop()
		}
	}()
	// The broker's floor, measured in the same run: two messages through
	// the broker per call, nothing else; no pair can exceed it.
	floor, err := startServers("floor", "default", topic("oslo-floor"), 1, 0)
	if err != nil {
		return fmt.Errorf("start floor server: %w", err)
	}
	srv[floorName] = floor
	names := make([]string, len(osloPairs))
	for i, p := range osloPairs {
		names[i] = p.name
		t := topic("oslo-" + p.client + "-" + p.server)
		var s *servers
		var err error
		if p.server == "go" {
			s, err = startServers("amqprpc", "oslo", t, 1, 0)
		} else {
			s, err = startPythonServer(t)
		}
		if err != nil {
			return fmt.Errorf("start %s server: %w", p.name, err)
		}
		srv[p.name] = s
	}
	ms := []measurement{{"tp1", 1, false}, {"tp64", 64, false}}
	res, err := series(cfg, w, ms, append(names, floorName), func(name string, m measurement) (result, error) {
		brokerCPU := func() float64 { return mustCPU(broker) }
		if name == floorName {
			return measureAt(brokerURL(), "floor", "default", srv[name], m.inflight, cfg, false, brokerCPU)
		}
		p := osloPairs[indexOf(names, name)]
		if p.client == "go" {
			return measureAt(brokerURL(), "amqprpc", "oslo", srv[name], m.inflight, cfg, false, brokerCPU)
		}
		proc, err := startCmd(python, osloScript(), "client", "--url", brokerURL(), "--topic", srv[name].topic,
			"--inflight", strconv.Itoa(m.inflight), "--warmup", cfg.warmup.String(), "--duration", cfg.duration.String())
		if err != nil {
			return result{}, err
		}
		return collect(proc, "oslo.py", "", srv[name], m.inflight, brokerCPU)
	})
	if err != nil {
		return err
	}
	med := res.med
	fmt.Fprintf(md, "amqprpc's oslo.messaging protocol (`runtime.WithOslo`, oslo.messaging's default settings) beside the real oslo.messaging "+
		"(Debian's python3-oslo.messaging, `bench/oslo.py`: an `RPCServer` with the threading executor, an `RPCClient` called from N threads), "+
		"the generated Calculator's `Add` and its Python twin. Each pair is one client process and one server process.\n\n")
	fmt.Fprintf(md, "| client -> server | calls/s, 1 in flight | calls/s, 64 in flight | client CPU per call at 64 | server CPU per call at 64 |\n|---|---|---|---|---|\n")
	for _, n := range names {
		fmt.Fprintf(md, "| %s | %s | %s | %s | %s |\n", n, fmtRate(med(n, "tp1", rate)), fmtRate(med(n, "tp64", rate)),
			fmtMicros(med(n, "tp64", clientCPU)), fmtMicros(med(n, "tp64", serverCPU)))
	}
	fmt.Fprintf(md, "| %s | %s | %s | | |\n", floorName, fmtRate(med(floorName, "tp1", rate)), fmtRate(med(floorName, "tp64", rate)))
	ratio := func(a, b, m string) float64 { return med(a, m, rate) / med(b, m, rate) }
	fmt.Fprintf(md, "\n| ratio of throughputs | 1 in flight | 64 in flight | target |\n|---|---|---|---|\n")
	fmt.Fprintf(md, "| Go -> Go / Python -> Python | %.1f | %.1f | at least 10 |\n", ratio("Go -> Go", "Python -> Python", "tp1"), ratio("Go -> Go", "Python -> Python", "tp64"))
	fmt.Fprintf(md, "| Go -> Python / Python -> Python | %.2f | %.2f | at least 1 |\n", ratio("Go -> Python", "Python -> Python", "tp1"), ratio("Go -> Python", "Python -> Python", "tp64"))
	fmt.Fprintf(md, "| Python -> Go / Python -> Python | %.2f | %.2f | |\n", ratio("Python -> Go", "Python -> Python", "tp1"), ratio("Python -> Go", "Python -> Python", "tp64"))
	fmt.Fprintf(md, "| %s / Python -> Python: the most any pair could reach | %.1f | %.1f | |\n", floorName, ratio(floorName, "Python -> Python", "tp1"), ratio(floorName, "Python -> Python", "tp64"))
	fmt.Fprintf(md, "| Go -> Go / %s | %.2f | %.2f | |\n\n", floorName, ratio("Go -> Go", floorName, "tp1"), ratio("Go -> Go", floorName, "tp64"))
	fmt.Fprintf(md, "At 1 in flight a call is two messages through the broker one after the other, which the broker's floor does %.1fx as often as the Python pair calls: "+
		"no client and server, however fast, could be more than that many times the Python pair there. The Go pair has no batches in this protocol, "+
		"where amqprpc's own has them (bench/NOTES.md).\n\n", ratio(floorName, "Python -> Python", "tp1"))
	for _, s := range srv {
		s.stop()
	}
	clear(srv)
	return nil
}

// startPythonServer starts bench/oslo.py's server on topic, named s1.
func startPythonServer(topic string) (*servers, error) {
	p, err := startCmd(python, osloScript(), "serve", "--url", brokerURL(), "--topic", topic, "--name", "s1")
	if err != nil {
		return nil, err
	}
	s := &servers{topic: topic, procs: []*proc{p}}
	if err := p.expect("ready"); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

func indexOf(xs []string, x string) int {
	for i, y := range xs {
		if y == x {
			return i
		}
	}
	return -1
}
