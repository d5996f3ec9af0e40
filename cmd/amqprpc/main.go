// Command amqprpc calls amqprpc servers from the command line, as grpcurl
// does gRPC servers: it lists the servers of a topic, describes what they
// serve, and calls, casts, fanouts and gathers their methods, and reads
// their streams, with arguments typed by the description every server
// gives (describe.Request), without the services' Go types.
//
//	go install github.com/amqprpc/amqprpc/cmd/amqprpc@latest
//
//	amqprpc list calc                    the servers of topic calc, their services and methods
//	amqprpc describe calc [add]          the methods, with their parameters and results
//	amqprpc call calc add v1=2 v2=3      prints 5
//	amqprpc call calc div -d '{"a": 1, "b": 0}'
//	amqprpc cast calc store v=5
//	amqprpc fanout calc clear
//	amqprpc gather calc memory
//	amqprpc call inventory list f='{}'   a stream: prints each item on a line
//
// Calling a stream method (mode stream in describe's output) prints its
// items as they come, each as one line of compact JSON (JSON lines), until
// the stream ends.
//
// The broker is -url, or $AMQP_URL, or amqp://guest:guest@127.0.0.1:5672/.
// -server NAME sends to one server of the topic; -timeout bounds each
// request (default 10s), but a stream only when given: by default a
// stream runs until its end, or until Ctrl-C, which ends it (its server
// stops) with exit status 130, and the default bounds only how long a
// server may take to start it. -wait is how long list and gather wait for
// replies when not told how many (-n); -v prints the request and the
// reply as they go on the wire. A server's error is printed with its code
// (for a stream, after the items that came before it), and the exit
// status is 1; a usage error's is 2.
package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/amqprpc/amqprpc/describe"
	"github.com/amqprpc/amqprpc/runtime"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

const usage = `usage: amqprpc [flags] list TOPIC
       amqprpc [flags] describe TOPIC [METHOD]
       amqprpc [flags] call|cast|fanout|gather TOPIC METHOD [name=value ...] [-d JSON]
       amqprpc [-type T] compat OLD NEW         (each a description file, a package with -type, or REV:PATH of either)
       amqprpc [flags] [-type T] compat topic:TOPIC NEW   (NEW against every server of TOPIC that runs)
`

// errUsage marks an error of the command line.
var errUsage = errors.New("usage")

// errInterrupted is a stream that Ctrl-C ended.
var errInterrupted = errors.New("interrupted")

// cli is one run of the command.
type cli struct {
	url, exchange, server string
	timeout, wait         time.Duration
	timeoutGiven          bool // -timeout was on the command line: it bounds streams too
	want                  int
	verbose               bool
	data                  string
	types, tags           string // compat: the interfaces of a package, and build tags
	genDir                string // compat: where amqprpc-gen runs (generatorDir)
	out, errOut           io.Writer
	client                *runtime.Client
}

func run(args []string, out, errOut io.Writer) int {
	c := &cli{out: out, errOut: errOut}
	fs := flag.NewFlagSet("amqprpc", flag.ContinueOnError)
	fs.SetOutput(errOut)
	fs.Usage = func() { fmt.Fprint(errOut, usage, "\nflags:\n"); fs.PrintDefaults() }
	url := os.Getenv("AMQP_URL")
	if url == "" {
		url = "amqp://guest:guest@127.0.0.1:5672/"
	}
	fs.StringVar(&c.url, "url", url, "the broker (default $AMQP_URL)")
	fs.StringVar(&c.exchange, "exchange", runtime.DefaultExchange, "the request exchange")
	fs.StringVar(&c.server, "server", "", "send to the server of this name alone")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "how long a request may take; a stream's only when given")
	fs.DurationVar(&c.wait, "wait", time.Second, "how long list and gather wait for replies, without -n")
	fs.IntVar(&c.want, "n", 0, "gather: return after this many replies")
	fs.BoolVar(&c.verbose, "v", false, "print the request and the reply")
	fs.StringVar(&c.data, "d", "", "the arguments as a JSON object")
	fs.StringVar(&c.types, "type", "", "compat: the interfaces of a package, comma-separated, as amqprpc-gen's -type")
	fs.StringVar(&c.tags, "tags", "", "compat: build tags for a package, as amqprpc-gen's -tags")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	// Flags may also follow the command's words.
	var words []string
	for rest := fs.Args(); len(rest) > 0; rest = fs.Args() {
		if strings.HasPrefix(rest[0], "-") && rest[0] != "-" { // "-" alone is a word: the standard input
			if err := fs.Parse(rest); err != nil {
				return 2
			}
			continue
		}
		words = append(words, rest[0])
		fs.Parse(rest[1:])
	}
	fs.Visit(func(f *flag.Flag) { c.timeoutGiven = c.timeoutGiven || f.Name == "timeout" })
	err := c.do(words)
	var rerr *runtime.Error
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(errOut, "amqprpc: %v\n%s", err, usage)
		return 2
	case errors.Is(err, errInterrupted):
		return 130 // as a shell reports a command that SIGINT ended
	case errors.As(err, &rerr):
		fmt.Fprintf(errOut, "amqprpc: error %s: %s\n", rerr.Code, rerr.Message)
		return 1
	}
	fmt.Fprintf(errOut, "amqprpc: %v\n", err)
	return 1
}

func (c *cli) do(words []string) error {
	if len(words) > 0 && words[0] == "compat" {
		return c.compat(words[1:])
	}
	if len(words) < 2 {
		return fmt.Errorf("%w: a command and a topic", errUsage)
	}
	cmd, topic := words[0], words[1]
	switch cmd {
	case "list", "describe", "call", "cast", "fanout", "gather":
	default:
		return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
	}
	var opts []runtime.ClientOption
	opts = append(opts, runtime.WithExchange(c.exchange), runtime.WithTimeout(c.timeout),
		runtime.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if c.verbose {
		opts = append(opts, runtime.WithClientInterceptors(c.trace), runtime.WithStreamClientInterceptors(c.traceStream))
	}
	client, err := runtime.Dial(c.url, opts...)
	if err != nil {
		return err
	}
	defer client.Close()
	c.client = client
	switch cmd {
	case "list":
		return c.list(topic)
	case "describe":
		if len(words) > 3 {
			return fmt.Errorf("%w: describe TOPIC [METHOD]", errUsage)
		}
		return c.describe(topic, words[2:])
	}
	if len(words) < 3 {
		return fmt.Errorf("%w: %s TOPIC METHOD", errUsage, cmd)
	}
	return c.invoke(cmd, topic, words[2], words[3:])
}

// trace prints what a request sends and what comes back (-v).
func (c *cli) trace(ctx context.Context, req *runtime.Request, reply any, next runtime.Invoke) error {
	c.sent(req)
	err := next(ctx, req, reply)
	switch r := reply.(type) {
	case *json.RawMessage:
		if err == nil {
			fmt.Fprintf(c.errOut, "< {\"result\":%s}\n", *r)
		}
	}
	if rerr, ok := errors.AsType[*runtime.Error](err); ok {
		failure, _ := json.Marshal(map[string]any{"failure": map[string]string{"code": string(rerr.Code), "message": rerr.Message}})
		fmt.Fprintf(c.errOut, "< %s\n", failure)
	}
	return err
}

// traceStream prints what a stream's request sends (-v); what comes back
// is its items, which the command prints, and its end.
func (c *cli) traceStream(ctx context.Context, req *runtime.Request, next runtime.Streamer) (runtime.ClientStream, error) {
	c.sent(req)
	return next(ctx, req)
}

// sent prints what req sends (-v).
func (c *cli) sent(req *runtime.Request) {
	body, _ := json.Marshal(map[string]any{"method": req.Method, "args": req.Args})
	key := req.Topic
	if req.Server != "" {
		key += "." + req.Server
	}
	fmt.Fprintf(c.errOut, "> %s exchange=%s key=%s %s\n", req.Mode, c.exchange, key, body)
}

// descriptions gathers the descriptions of the topic's servers, or of
// the one named: all that answer within -wait, or the first one when
// first is set.
func (c *cli) descriptions(topic string, first bool) ([]describe.Server, error) {
	req := runtime.Request{Target: runtime.Target{Topic: topic, Server: c.server}, Method: describe.Request, Args: struct{}{}}
	if c.server != "" {
		var d describe.Server
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		defer cancel()
		err := c.client.Invoke(ctx, req, &d)
		return []describe.Server{d}, err
	}
	want, wait := 0, c.wait
	if first {
		want, wait = 1, c.timeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	replies, err := runtime.Gather[describe.Server](ctx, c.client, req, want)
	var ds []describe.Server
	for _, r := range replies {
		if r.Err != nil {
			fmt.Fprintf(c.errOut, "amqprpc: server %s: %v\n", r.Server, r.Err)
			continue
		}
		ds = append(ds, r.Value)
	}
	if err == nil && len(ds) == 0 {
		err = fmt.Errorf("no server of topic %q answered within %v", topic, c.wait)
	}
	slices.SortFunc(ds, func(a, b describe.Server) int { return strings.Compare(a.Name, b.Name) })
	return ds, err
}

// list prints each server of the topic with its services and methods.
func (c *cli) list(topic string) error {
	ds, err := c.descriptions(topic, false)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SERVER\tSERVICE\tVERSION\tMETHODS")
	for _, d := range ds {
		for _, s := range d.Services {
			var names []string
			for _, m := range s.Methods {
				names = append(names, m.Name)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", d.Name, s.Name, s.Version, strings.Join(names, " "))
		}
	}
	return w.Flush()
}

// describe prints the methods of the topic's services, or one of them.
func (c *cli) describe(topic string, method []string) error {
	ds, err := c.descriptions(topic, true)
	if err != nil {
		return err
	}
	d := ds[0]
	found := false
	for _, s := range d.Services {
		fmt.Fprintf(c.out, "service %s %s (server %s)", s.Name, s.Version, d.Name)
		if s.Namespace != "" {
			fmt.Fprintf(c.out, ", namespace %s", s.Namespace)
		}
		fmt.Fprintln(c.out)
		for _, m := range s.Methods {
			if len(method) > 0 && m.Name != method[0] {
				continue
			}
			found = true
			fmt.Fprintf(c.out, "  %s\n", signature(m))
		}
	}
	if len(method) > 0 && !found {
		return fmt.Errorf("topic %q has no method %q", topic, method[0])
	}
	return nil
}

// signature renders m: "call add(v1 int, v2 int) int, since 1.0", or for
// a stream of int, as its Go interface declares it, "stream count(n int)
// iter.Seq2[int, error], since 1.0".
func signature(m describe.Method) string {
	fields := func(fs []describe.Field) string {
		var parts []string
		for _, f := range fs {
			parts = append(parts, f.Name+" "+f.GoType)
		}
		return strings.Join(parts, ", ")
	}
	s := fmt.Sprintf("%s %s(%s)", m.Mode, m.Name, fields(m.Params))
	switch len(m.Results) {
	case 0:
	case 1:
		if m.Mode == runtime.Stream.String() { // its one result is its item
			s += " iter.Seq2[" + m.Results[0].GoType + ", error]"
			break
		}
		s += " " + m.Results[0].GoType
	default:
		s += " (" + fields(m.Results) + ")"
	}
	s += ", since " + m.Since
	if m.Gather {
		s += ", gather"
	}
	return s
}

// invoke sends method with the arguments given, in the mode of cmd.
func (c *cli) invoke(cmd, topic, method string, words []string) error {
	m, err := c.method(topic, method)
	if err != nil {
		return err
	}
	args, err := c.args(m, words)
	if err != nil {
		return err
	}
	req := runtime.Request{Target: runtime.Target{Topic: topic, Server: c.server}, Method: method, Since: m.Since, Args: args}
	if m.Mode == runtime.Stream.String() {
		if cmd != "call" {
			return fmt.Errorf("%w: %s sends a stream of items: amqprpc call %s %s", errUsage, method, topic, method)
		}
		return c.stream(req)
	}
	switch cmd {
	case "cast":
		req.Mode = runtime.Cast
	case "fanout":
		req.Mode = runtime.Fanout
	case "gather":
		return c.gather(req)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	var result json.RawMessage
	reply := any(&result)
	if req.Mode != runtime.Call {
		reply = nil
	}
	if err := c.client.Invoke(ctx, req, reply); err != nil {
		return err
	}
	if req.Mode == runtime.Call {
		fmt.Fprintf(c.out, "%s\n", result)
	}
	return nil
}

// stream calls req, a stream, and prints each item as it comes, as one
// line of compact JSON, in one write: a line is out as soon as its item
// came. The stream runs until its end or its failure, or until -timeout
// when it was given; Ctrl-C ends it (its server stops) with
// errInterrupted.
func (c *cli) stream(req runtime.Request) error {
	interrupted, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop() // a second Ctrl-C, once the stream is over, kills as usual
	ctx := interrupted
	if c.timeoutGiven {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	st, err := c.client.InvokeStream(ctx, req)
	if err == nil {
		defer st.Close()
		err = c.printItems(st)
	}
	if err != nil && interrupted.Err() != nil {
		return errInterrupted
	}
	return err
}

// printItems prints the items of st, each on a line, until its end.
func (c *cli) printItems(st runtime.ClientStream) error {
	var line bytes.Buffer
	for {
		var item json.RawMessage
		switch err := st.Recv(&item); {
		case err == io.EOF:
			return nil
		case err != nil:
			return err
		}
		line.Reset()
		if err := json.Compact(&line, item); err != nil { // it decoded: it is JSON
			return err
		}
		line.WriteByte('\n')
		if _, err := c.out.Write(line.Bytes()); err != nil {
			return err
		}
	}
}

// gather sends req to every server and prints each reply as it comes.
func (c *cli) gather(req runtime.Request) error {
	wait := c.wait
	if c.want > 0 {
		wait = c.timeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	failed := false
	err := c.client.InvokeAll(ctx, req, c.want, func(server string, decode func(any) error) {
		var result json.RawMessage
		if err := decode(&result); err != nil {
			failed = true
			fmt.Fprintf(c.out, "%s\terror: %v\n", server, err)
			return
		}
		fmt.Fprintf(c.out, "%s\t%s\n", server, result)
	})
	if err == nil && failed {
		err = errors.New("a server failed")
	}
	return err
}

// method returns the description of method from a server of the topic.
func (c *cli) method(topic, method string) (describe.Method, error) {
	ds, err := c.descriptions(topic, true)
	if err != nil {
		return describe.Method{}, err
	}
	for _, d := range ds {
		for _, s := range d.Services {
			for _, m := range s.Methods {
				if m.Name == method {
					return m, nil
				}
			}
		}
	}
	return describe.Method{}, fmt.Errorf("topic %q has no method %q (amqprpc describe %s)", topic, method, topic)
}

// args makes the arguments object of m from -d or name=value words, each
// value typed by the parameter's JSON shape.
func (c *cli) args(m describe.Method, words []string) (map[string]json.RawMessage, error) {
	args := map[string]json.RawMessage{}
	if c.data != "" {
		if len(words) > 0 {
			return nil, fmt.Errorf("%w: -d or name=value arguments, not both", errUsage)
		}
		if err := json.Unmarshal([]byte(c.data), &args); err != nil {
			return nil, fmt.Errorf("%w: -d: %v", errUsage, err)
		}
		return args, nil
	}
	for _, w := range words {
		name, value, ok := strings.Cut(w, "=")
		if !ok {
			return nil, fmt.Errorf("%w: argument %q is not name=value", errUsage, w)
		}
		i := slices.IndexFunc(m.Params, func(f describe.Field) bool { return f.Name == name })
		if i < 0 {
			var names []string
			for _, f := range m.Params {
				names = append(names, f.Name+" "+f.GoType)
			}
			return nil, fmt.Errorf("%w: %s has no parameter %q; it takes (%s)", errUsage, m.Name, name, strings.Join(names, ", "))
		}
		raw, err := typed(m.Params[i], value)
		if err != nil {
			return nil, fmt.Errorf("%w: %s=%s: %v", errUsage, name, value, err)
		}
		args[name] = raw
	}
	return args, nil
}

// typed returns value as the JSON of parameter f.
func typed(f describe.Field, value string) (json.RawMessage, error) {
	switch f.JSON {
	case "integer":
		if _, err := strconv.ParseInt(value, 10, 64); err != nil {
			if _, err := strconv.ParseUint(value, 10, 64); err != nil {
				return nil, fmt.Errorf("%s wants an integer", f.GoType)
			}
		}
		return json.RawMessage(value), nil
	case "number":
		if _, err := strconv.ParseFloat(value, 64); err != nil {
			return nil, fmt.Errorf("%s wants a number", f.GoType)
		}
		return json.RawMessage(value), nil
	case "boolean":
		b, err := strconv.ParseBool(value)
		if err != nil {
			return nil, fmt.Errorf("%s wants true or false", f.GoType)
		}
		return json.Marshal(b)
	case "string":
		return json.Marshal(value)
	}
	if !json.Valid([]byte(value)) {
		return nil, fmt.Errorf("%s wants JSON (%s)", f.GoType, f.JSON)
	}
	return json.RawMessage(value), nil
}

// compat compares two descriptions and prints each change with its kind
// and rule (docs/CONTRACTS.md), and fails when one is wire-breaking and no
// new major version covers it. Each is a file that amqprpc-gen -describe
// (or -description) wrote, "-" for the standard input, a package's
// directory with -type, or either at a git revision, REV:PATH.
func (c *cli) compat(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("%w: compat OLD NEW", errUsage)
	}
	if args[0] == "-" && args[1] == "-" {
		return fmt.Errorf("%w: compat: one side at most may be the standard input", errUsage)
	}
	c.genDir = generatorDir(args)
	if topic, ok := strings.CutPrefix(args[0], "topic:"); ok {
		return c.rollout(topic, args[1])
	}
	var sides [2][]describe.Service
	for i, name := range args {
		var err error
		if sides[i], err = c.readDescription(name); err != nil {
			return err
		}
	}
	return c.report(describe.Compare(sides[0], sides[1]))
}

// report prints changes, and fails when one breaks and no new major
// version covers it.
func (c *cli) report(changes []describe.Change) error {
	for _, ch := range changes {
		fmt.Fprintln(c.out, ch)
	}
	if describe.Breaks(changes) {
		return errors.New("wire-breaking changes that no new major version covers")
	}
	fmt.Fprintf(c.out, "compatible: %d changes, none wire-breaking without a new major version%s\n", len(changes), notCompared(changes))
	return nil
}

// notCompared says how many changes could not be compared, if any.
func notCompared(changes []describe.Change) string {
	n := 0
	for _, ch := range changes {
		if ch.Kind == describe.Unchecked {
			n++
		}
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d not compared)", n)
}

// readDescription reads the description name gives: a file, "-" for
// the standard input, a package's directory (with -type), or REV:PATH, the
// file or the package at PATH in the git revision REV (main:calc.json),
// when PATH is nothing here.
func (c *cli) readDescription(name string) ([]describe.Service, error) {
	data, err := c.readSource(name)
	if err != nil {
		return nil, err
	}
	var d []describe.Service
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("%s is not a description (amqprpc-gen -describe): %w", name, err)
	}
	return d, nil
}

func (c *cli) readSource(name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(os.Stdin)
	}
	info, err := os.Stat(name)
	switch {
	case err == nil && info.IsDir():
		return c.describePackage(name)
	case err == nil:
		return os.ReadFile(name)
	}
	rev, path, ok := strings.Cut(name, ":")
	if !ok || rev == "" || path == "" {
		return nil, err
	}
	kind, gerr := exec.Command("git", "cat-file", "-t", name).Output()
	switch strings.TrimSpace(string(kind)) {
	case "blob":
		return exec.Command("git", "show", name).Output()
	case "tree":
		dir, cleanup, err := checkout(rev, path)
		if err != nil {
			return nil, err
		}
		defer cleanup()
		return c.describePackage(dir)
	}
	return nil, fmt.Errorf("%s: no such file or package, nor one of a git revision (git cat-file %s: %v)", name, name, gerr)
}

// describePackage describes the interfaces -type of the package in dir
// with amqprpc-gen -describe, as go run runs it in c.genDir: the version
// that module requires, whichever revision dir holds, so that both sides
// of a comparison are described alike.
func (c *cli) describePackage(dir string) ([]byte, error) {
	if c.types == "" {
		return nil, fmt.Errorf("%w: %s is a package: name its interfaces with -type", errUsage, dir)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	args := []string{"run", "github.com/amqprpc/amqprpc/cmd/amqprpc-gen", "-describe", "-type=" + c.types}
	if c.tags != "" {
		args = append(args, "-tags="+c.tags)
	}
	cmd := exec.Command("go", append(args, abs)...)
	cmd.Dir = c.genDir
	if cmd.Dir == "" {
		cmd.Dir = abs // no module here, and no package but at a revision: its own
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("describing %s with amqprpc-gen (go run github.com/amqprpc/amqprpc/cmd/amqprpc-gen, in a module that requires it): %v\n%s", dir, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// generatorDir is where amqprpc-gen runs for both sides of a comparison,
// so that one version describes both: here, when here is in a module; or
// else the directory of the side that is a package here; or "", each
// package's own.
func generatorDir(args []string) string {
	if gomod, _ := exec.Command("go", "env", "GOMOD").Output(); len(bytes.TrimSpace(gomod)) > 0 && string(bytes.TrimSpace(gomod)) != os.DevNull {
		return "."
	}
	for _, a := range slices.Backward(args) {
		if info, err := os.Stat(a); err == nil && info.IsDir() {
			if abs, err := filepath.Abs(a); err == nil {
				return abs
			}
		}
	}
	return ""
}

// checkout writes the files of the git revision rev into a temporary
// directory and returns the directory of path in it (relative to the
// repository's top, or to here when it begins with ./ or ../, as git show
// reads it), and the function that removes them. The whole revision is
// written, as a package may need any of its module (and a replace
// directive, files beyond it).
func checkout(rev, path string) (string, func(), error) {
	git := func(args ...string) (string, error) {
		out, err := exec.Command("git", args...).Output()
		return strings.TrimSpace(string(out)), err
	}
	top, err := git("rev-parse", "--show-toplevel")
	if err != nil {
		return "", nil, fmt.Errorf("%s:%s: not in a git repository: %w", rev, path, err)
	}
	if strings.HasPrefix(path, "./") || strings.HasPrefix(path, "../") {
		prefix, _ := git("rev-parse", "--show-prefix")
		path = filepath.Join(prefix, path)
	}
	tmp, err := os.MkdirTemp("", "amqprpc-compat-")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { os.RemoveAll(tmp) }
	archive := exec.Command("git", "-C", top, "archive", "--format=tar", rev)
	var stderr bytes.Buffer
	archive.Stderr = &stderr
	out, err := archive.StdoutPipe()
	if err == nil {
		err = archive.Start()
	}
	if err == nil {
		err = untar(out, tmp)
		io.Copy(io.Discard, out)
		if werr := archive.Wait(); err == nil && werr != nil {
			err = fmt.Errorf("git archive %s: %v: %s", rev, werr, strings.TrimSpace(stderr.String()))
		}
	}
	if err != nil {
		cleanup()
		return "", nil, err
	}
	return filepath.Join(tmp, filepath.Clean(path)), cleanup, nil
}

// untar writes the directories and regular files of the tar stream r
// under dir; git archive writes no others that a Go package needs.
func untar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if !filepath.IsLocal(h.Name) {
			return fmt.Errorf("git archive: a path outside the archive: %q", h.Name)
		}
		target := filepath.Join(dir, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(target, 0o777)
		case tar.TypeReg:
			var f *os.File
			if err = os.MkdirAll(filepath.Dir(target), 0o777); err == nil {
				f, err = os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o666)
			}
			if err == nil {
				_, err = io.Copy(f, tr)
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}
		}
		if err != nil {
			return err
		}
	}
}

// rollout checks the description in file, of the interfaces about to be
// deployed, against every server of topic that answers: server by server,
// whether a client built from it can call each method the server has,
// and whether a server built from it can serve the callers the server's
// interfaces allowed. It fails when one server would break.
func (c *cli) rollout(topic, file string) error {
	next, err := c.readDescription(file)
	if err != nil {
		return err
	}
	c.client, err = runtime.Dial(c.url, runtime.WithExchange(c.exchange), runtime.WithTimeout(c.timeout),
		runtime.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		return err
	}
	defer c.client.Close()
	servers, err := c.descriptions(topic, false)
	if err != nil {
		return err
	}
	names := make(map[string]bool)
	for _, s := range next {
		names[s.Name] = true
	}
	broken := 0
	for _, d := range servers {
		var running []describe.Service // what the server serves of the interfaces checked
		for _, s := range d.Services {
			if names[s.Name] {
				running = append(running, s)
			}
		}
		var changes []describe.Change
		for _, ch := range describe.Compare(running, next) {
			if ch.Rule != "service-added" || len(running) > 0 { // a server that serves other interfaces is no concern of theirs
				changes = append(changes, ch)
			}
		}
		// Against a server that runs, a new major version breaks as much
		// as the changes it covers: its callers fail with
		// unsupported_version.
		verdict := "compatible" + notCompared(changes)
		if slices.ContainsFunc(changes, func(ch describe.Change) bool { return ch.Kind == describe.Breaking || ch.Rule == "major-version" }) {
			verdict, broken = "WIRE-BREAKING", broken+1
		}
		fmt.Fprintf(c.out, "server %s: %s\n", d.Name, verdict)
		for _, ch := range changes {
			fmt.Fprintf(c.out, "  %s\n", ch)
		}
	}
	if broken > 0 {
		return fmt.Errorf("%d of %d servers of %s would break: a client or a server of the new interfaces fails against them", broken, len(servers), topic)
	}
	return nil
}
