package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amqprpc/amqprpc/describe"
	"github.com/amqprpc/amqprpc/examples/calc"
	"github.com/amqprpc/amqprpc/internal/testsvc"
	"github.com/amqprpc/amqprpc/runtime"
)

// TestMain runs the command itself when AMQPRPC_TEST_MAIN is set, for
// tests that run it as a process of its own to signal it.
func TestMain(m *testing.M) {
	if os.Getenv("AMQPRPC_TEST_MAIN") == "1" {
		main()
	}
	os.Exit(m.Run())
}

func brokerURL() string {
	if u := os.Getenv("AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

// serveCalc runs the calc example's servers a and b on topic until the
// test ends.
func serveCalc(t *testing.T, topic string) {
	serveDescs(t, topic, map[string]*runtime.ServiceDesc{"a": &calc.Calculator_ServiceDesc, "b": &calc.Calculator_ServiceDesc})
}

// serveDescs runs a server of each name on topic, serving a calc.Machine
// as its description says, until the test ends, and waits until each
// answers by name.
func serveDescs(t *testing.T, topic string, servers map[string]*runtime.ServiceDesc) {
	t.Cleanup(func() { testsvc.DeleteTopic(brokerURL(), topic) }) // once every server has stopped
	for name, desc := range servers {
		s := runtime.NewServer(brokerURL(), topic, runtime.WithServerName(name))
		s.RegisterService(desc, new(calc.Machine))
		testsvc.Serve(t, s, "", topic)
	}
	// Each serves once it answers by name.
	for name := range servers {
		for end := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if code, _, _ := amqprpc(t, "-server", name, "-timeout", "1s", "call", topic, "add", "v1=1", "v2=1"); code == 0 {
				break
			}
			if time.Now().After(end) {
				t.Fatalf("server %s does not answer", name)
			}
		}
	}
}

// amqprpc runs the command with args and returns its exit status and
// what it printed.
func amqprpc(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(append([]string{"-url", brokerURL()}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestCommands: every command against the calc example's servers.
func TestCommands(t *testing.T) {
	topic := fmt.Sprintf("cli.%d", time.Now().UnixNano())
	serveCalc(t, topic)
	for _, tc := range []struct {
		args           []string
		code           int
		stdout, stderr string // each must be in what was printed
	}{
		{[]string{"call", topic, "add", "v1=2", "v2=3"}, 0, "5\n", ""},
		{[]string{"call", topic, "add", "-d", `{"v1": 40, "v2": 2}`}, 0, "42\n", ""},
		{[]string{"-v", "call", topic, "div", "a=7", "b=2"}, 0, "3\n", `> call exchange=amqprpc key=` + topic + ` {"args":{"a":7,"b":2},"method":"div"}` + "\n< {\"result\":3}"},
		{[]string{"call", topic, "div", "a=1", "b=0"}, 1, "", "amqprpc: error unknown: divide by zero"},
		{[]string{"call", topic, "add", "v1=two"}, 2, "", "v1=two: int wants an integer"},
		{[]string{"call", topic, "add", "v3=1"}, 2, "", `add has no parameter "v3"; it takes (v1 int, v2 int)`},
		{[]string{"call", topic, "mul"}, 1, "", `topic "` + topic + `" has no method "mul"`},
		{[]string{"list", topic}, 0, "a       Calculator  1.1      add clear div memory store", ""},
		{[]string{"describe", topic, "div"}, 0, "service Calculator 1.1 (server ", ""},
		{[]string{"describe", topic, "div"}, 0, ")\n  call div(a int, b int) int, since 1.1\n", ""},
		{[]string{"describe", topic}, 0, "  call memory() int, since 1.0, gather\n  cast store(v int), since 1.0", ""},
		{[]string{"-server", "b", "cast", topic, "store", "v=5"}, 0, "", ""},
		{[]string{"gather", topic, "memory", "-n", "2"}, 0, "b\t5\n", ""},
		{[]string{"fanout", topic, "clear"}, 0, "", ""},
		{[]string{"-server", "b", "call", topic, "memory"}, 0, "0\n", ""},
		{[]string{"call", "cli.nobody", "add"}, 1, "", "no server is bound to the topic"},
		{[]string{"frob", topic}, 2, "", `unknown command "frob"`},
	} {
		code, out, errOut := amqprpc(t, tc.args...)
		if code != tc.code || !strings.Contains(out, tc.stdout) || !strings.Contains(errOut, tc.stderr) {
			t.Errorf("amqprpc %s: status %d, stdout %q, stderr %q; want %d, %q, %q", strings.Join(tc.args, " "), code, out, errOut, tc.code, tc.stdout, tc.stderr)
		}
	}
}

// counter is a service with streams, its ServiceDesc written as
// amqprpc-gen would: count sends n ticks (forever when n < 0), one each
// every milliseconds, then fails with fail, if set; deadline sends one
// item, whether its context has a deadline. ended has the context's error
// of each count as it ends.
type counter struct{ ended chan error }

type countArgs struct {
	N     int    `json:"n"`
	Fail  string `json:"fail"`
	Every int    `json:"every"`
}

type Tick struct {
	N int `json:"n"`
}

func (c *counter) Count(ctx context.Context, a countArgs) iter.Seq2[Tick, error] {
	return func(yield func(Tick, error) bool) {
		defer func() { c.ended <- ctx.Err() }()
		for i := 0; a.N < 0 || i < a.N; i++ {
			select {
			case <-time.After(time.Duration(a.Every) * time.Millisecond):
			case <-ctx.Done():
				return
			}
			if !yield(Tick{N: i}, nil) {
				return
			}
		}
		if a.Fail != "" {
			yield(Tick{}, &runtime.Error{Code: runtime.CodeAborted, Message: a.Fail})
		}
	}
}

var counterDesc = runtime.ServiceDesc{ServiceName: "Counter", Methods: []runtime.MethodDesc{
	{Name: "count", Mode: runtime.Stream,
		Handler: func(impl any, ctx context.Context, dec func(any) error) (any, error) {
			var a countArgs
			if err := dec(&a); err != nil {
				return nil, err
			}
			return runtime.ItemsOf(impl.(*counter).Count(ctx, a)), nil
		},
		Params:  []runtime.FieldDesc{{Name: "n", GoType: "int", JSON: "integer"}, {Name: "fail", GoType: "string", JSON: "string"}, {Name: "every", GoType: "int", JSON: "integer"}},
		Results: []runtime.FieldDesc{{Name: "item", GoType: "Tick", JSON: "object"}}},
	{Name: "deadline", Mode: runtime.Stream,
		Handler: func(_ any, ctx context.Context, _ func(any) error) (any, error) {
			return runtime.ItemsOf(func(yield func(bool, error) bool) {
				_, ok := ctx.Deadline()
				yield(ok, nil)
			}), nil
		},
		Results: []runtime.FieldDesc{{Name: "item", GoType: "bool", JSON: "boolean"}}},
}}

// serveCounter runs a counter's server on topic until the test ends.
func serveCounter(t *testing.T, topic string) *counter {
	c := &counter{ended: make(chan error, 64)}
	s := runtime.NewServer(brokerURL(), topic, runtime.WithServerName("counter"))
	s.RegisterService(&counterDesc, c)
	testsvc.Serve(t, s, brokerURL(), topic)
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if code, _, _ := amqprpc(t, "-timeout", "1s", "call", topic, "count", "n=0"); code == 0 {
			return c
		}
		if time.Now().After(end) {
			t.Fatal("the counter does not answer")
		}
	}
}

// TestStreams: calling a stream prints its items as lines of JSON, then
// exits 0; or, when it fails, the items before its failure, then the
// failure, and exits 1. A stream has no deadline unless -timeout is
// given, which then cuts it.
func TestStreams(t *testing.T) {
	topic := fmt.Sprintf("cli.stream.%d", time.Now().UnixNano())
	serveCounter(t, topic)
	for _, tc := range []struct {
		args   []string
		code   int
		stdout string // all that was printed
		stderr string // in what was printed
	}{
		{[]string{"call", topic, "count", "n=3"}, 0, "{\"n\":0}\n{\"n\":1}\n{\"n\":2}\n", ""},
		{[]string{"call", topic, "count", "n=0"}, 0, "", ""},
		{[]string{"call", topic, "count", "n=2", "fail=out of ticks"}, 1, "{\"n\":0}\n{\"n\":1}\n", "amqprpc: error aborted: out of ticks\n"},
		{[]string{"-v", "call", topic, "count", "n=1"}, 0, "{\"n\":0}\n", `> stream exchange=amqprpc key=` + topic + ` {"args":{"n":1},"method":"count"}` + "\n"},
		{[]string{"call", topic, "deadline"}, 0, "false\n", ""},
		{[]string{"-timeout", "5s", "call", topic, "deadline"}, 0, "true\n", ""},
		{[]string{"cast", topic, "count", "n=1"}, 2, "", "count sends a stream of items: amqprpc call " + topic + " count"},
		{[]string{"describe", topic}, 0, "service Counter 1.0 (server counter)\n" +
			"  stream count(n int, fail string, every int) iter.Seq2[Tick, error], since 1.0\n" +
			"  stream deadline() iter.Seq2[bool, error], since 1.0\n", ""},
	} {
		code, out, errOut := amqprpc(t, tc.args...)
		if code != tc.code || out != tc.stdout || !strings.Contains(errOut, tc.stderr) {
			t.Errorf("amqprpc %s: status %d, stdout %q, stderr %q; want %d, %q, %q", strings.Join(tc.args, " "), code, out, errOut, tc.code, tc.stdout, tc.stderr)
		}
	}

	start := time.Now()
	code, out, errOut := amqprpc(t, "-timeout", "500ms", "call", topic, "count", "n=-1", "every=100")
	if took := time.Since(start); code != 1 || !strings.HasPrefix(out, "{\"n\":0}\n{\"n\":1}\n") || !strings.Contains(errOut, "deadline") || took > 3*time.Second {
		t.Errorf("an endless stream with -timeout 500ms: status %d after %v, stdout %q, stderr %q; want 1 within a second or so, ticks, a deadline", code, took, out, errOut)
	}
}

// TestStreamInterrupt: Ctrl-C ends a stream that the command prints: its
// server's method stops (its context is cancelled), and the command exits
// with status 130, quietly. The command runs as a process of its own, to
// be signalled.
func TestStreamInterrupt(t *testing.T) {
	topic := fmt.Sprintf("cli.stream.%d", time.Now().UnixNano())
	cn := serveCounter(t, topic)
	cmd := exec.Command(os.Args[0], "-url", brokerURL(), "call", topic, "count", "n=-1", "every=20")
	cmd.Env = append(os.Environ(), "AMQPRPC_TEST_MAIN=1")
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	for i := range 3 { // printed as they come: the stream runs
		if !lines.Scan() || lines.Text() != fmt.Sprintf(`{"n":%d}`, i) {
			cmd.Process.Kill()
			t.Fatalf("line %d: %q, %v (stderr %q)", i, lines.Text(), lines.Err(), errOut.String())
		}
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	for lines.Scan() { // what came before the signal
	}
	err = cmd.Wait()
	if exit, ok := errors.AsType[*exec.ExitError](err); !ok || exit.ExitCode() != 130 || errOut.Len() != 0 {
		t.Errorf("after Ctrl-C: %v, stderr %q; want exit status 130, nothing printed", err, errOut.String())
	}
	for end := time.After(5 * time.Second); ; {
		select {
		case err := <-cn.ended:
			if err == nil { // a stream of serveCounter's, which ended well
				continue
			}
			if !errors.Is(err, context.Canceled) {
				t.Errorf("the server's method ended with %v; want its context cancelled", err)
			}
			return
		case <-end:
			t.Fatal("the server's method did not stop within 5s of Ctrl-C")
		}
	}
}

// amqprpc compat prints each change with its kind and rule, and fails on
// a wire-breaking change that no new major version covers; it needs no
// broker.
func TestCompat(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o666); err != nil {
			t.Fatal(err)
		}
		return p
	}
	old := write("old.json", `[{"name":"Calculator","version":"1.1","methods":[
		{"name":"add","mode":"call","since":"1.0","params":[{"name":"v1","go_type":"int","json":"integer","schema":{"type":"integer","format":"int64"}},{"name":"v2","go_type":"int","json":"integer","schema":{"type":"integer","format":"int64"}}],"results":[{"name":"r1","go_type":"int","json":"integer","schema":{"type":"integer","format":"int64"}}]}]}]`)
	renamed := write("renamed.json", `[{"name":"Calculator","version":"1.1","methods":[
		{"name":"add","mode":"call","since":"1.0","params":[{"name":"v1","go_type":"int","json":"integer","schema":{"type":"integer","format":"int64"}},{"name":"w2","go_type":"int","json":"integer","schema":{"type":"integer","format":"int64"}}],"results":[{"name":"r1","go_type":"int","json":"integer","schema":{"type":"integer","format":"int64"}}]}]}]`)
	added := write("added.json", `[{"name":"Calculator","version":"1.2","methods":[
		{"name":"add","mode":"call","since":"1.0","params":[{"name":"v1","go_type":"int","json":"integer","schema":{"type":"integer","format":"int64"}},{"name":"v2","go_type":"int","json":"integer","schema":{"type":"integer","format":"int64"}}],"results":[{"name":"r1","go_type":"int","json":"integer","schema":{"type":"integer","format":"int64"}}]},
		{"name":"mul","mode":"call","since":"1.2","params":[],"results":[]}]}]`)
	for _, tc := range []struct {
		new  string
		code int
		want string
	}{
		{renamed, 1, "wire-breaking: Calculator.add: parameter v2 is gone"},
		{added, 0, "safe: Calculator.mul: a new method, since 1.2"},
		{old, 0, "compatible: 0 changes"},
	} {
		var out, errOut bytes.Buffer
		if code := run([]string{"compat", old, tc.new}, &out, &errOut); code != tc.code || !strings.Contains(out.String(), tc.want) {
			t.Fatalf("compat old %s: exit %d (want %d)\n%s%s", filepath.Base(tc.new), code, tc.code, out.String(), errOut.String())
		}
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"compat", old}, &out, &errOut); code != 2 {
		t.Fatalf("compat with one description: exit %d", code)
	}
	// "-" is the standard input, on either side.
	for _, args := range [][]string{{"compat", "-", renamed}, {"compat", old, "-"}} {
		f, err := os.Open(old)
		if err != nil {
			t.Fatal(err)
		}
		stdin := os.Stdin
		os.Stdin = f
		out.Reset()
		code := run(args, &out, &errOut)
		os.Stdin = stdin
		f.Close()
		if want := map[bool]int{true: 1, false: 0}[args[2] == renamed]; code != want {
			t.Fatalf("%v: exit %d, want %d\n%s%s", args, code, want, out.String(), errOut.String())
		}
	}
}

// amqprpc compat topic:TOPIC NEW.json checks what is about to be deployed
// against every server of the topic that runs: here server a of
// Calculator 1.1 and server b of its 1.0, which had no div.
func TestRollout(t *testing.T) {
	topic := fmt.Sprintf("cli.rollout.%d", time.Now().UnixNano())
	v10 := calc.Calculator_ServiceDesc
	v10.Version = "1.0"
	v10.Methods = nil
	for _, m := range calc.Calculator_ServiceDesc.Methods {
		if m.Name != "div" {
			v10.Methods = append(v10.Methods, m)
		}
	}
	serveDescs(t, topic, map[string]*runtime.ServiceDesc{"a": &calc.Calculator_ServiceDesc, "b": &v10})
	// The description of what is about to be deployed: Calculator 1.1, as
	// server a serves it; then the same with add's v2 renamed.
	client, err := runtime.Dial(brokerURL())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	var d describe.Server
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := client.Invoke(ctx, runtime.Request{Target: runtime.Target{Topic: topic, Server: "a"}, Method: describe.Request, Args: struct{}{}}, &d); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	same, _ := json.Marshal(d.Services)
	os.WriteFile(filepath.Join(dir, "same.json"), same, 0o666)
	d.Services[0].Methods[0].Params[1].Name = "w2" // add's
	renamed, _ := json.Marshal(d.Services)
	os.WriteFile(filepath.Join(dir, "renamed.json"), renamed, 0o666)

	code, out, errOut := amqprpc(t, "-wait", "2s", "compat", "topic:"+topic, filepath.Join(dir, "same.json"))
	if code != 0 || !strings.Contains(out, "server a: compatible") || !strings.Contains(out, "server b: compatible") || !strings.Contains(out, "Calculator.div: a new method, since 1.1") {
		t.Fatalf("rolling out what server a runs: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("rolling out Calculator 1.1:\n%s", out)
	// The same from the package: what would be built from it now.
	code, out, errOut = amqprpc(t, "-wait", "2s", "-type", "Calculator", "compat", "topic:"+topic, "../../examples/calc")
	if code != 0 || !strings.Contains(out, "server a: compatible") || !strings.Contains(out, "server b: compatible") {
		t.Fatalf("rolling out the calc package: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = amqprpc(t, "-wait", "2s", "compat", "topic:"+topic, filepath.Join(dir, "renamed.json"))
	if code != 1 || !strings.Contains(out, "server a: WIRE-BREAKING") || !strings.Contains(out, "server b: WIRE-BREAKING") || !strings.Contains(errOut, "2 of 2 servers") {
		t.Fatalf("rolling out a renamed parameter: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("rolling out add(v1, w2):\n%s%s", out, errOut)

	// A new major version, with the same renamed parameter: compat OLD
	// NEW passes it, but every server that runs would fail its callers.
	d.Services[0].Version = "2.0"
	major, _ := json.Marshal(d.Services)
	os.WriteFile(filepath.Join(dir, "major.json"), major, 0o666)
	code, out, errOut = amqprpc(t, "-wait", "2s", "compat", "topic:"+topic, filepath.Join(dir, "major.json"))
	if code != 1 || !strings.Contains(out, "server a: WIRE-BREAKING") || !strings.Contains(out, "[major-version]") {
		t.Fatalf("rolling out a new major version: exit %d\n%s%s", code, out, errOut)
	}
}

// A description may come from a git revision: REV:PATH.
func TestCompatGitRevision(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	dir := t.TempDir()
	git := func(args ...string) {
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@t"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
	}
	desc := `[{"name":"S","version":"1.0","methods":[{"name":"m","mode":"call","since":"1.0","params":[],"results":[]}]}]`
	git("init", "-q")
	os.WriteFile(filepath.Join(dir, "s.json"), []byte(desc), 0o666)
	git("add", "s.json")
	git("commit", "-qm", "s")
	os.WriteFile(filepath.Join(dir, "s.json"), []byte(`[{"name":"S","version":"1.0","methods":[]}]`), 0o666)
	wd, _ := os.Getwd()
	defer os.Chdir(wd)
	os.Chdir(dir)
	var out, errOut bytes.Buffer
	if code := run([]string{"compat", "HEAD:s.json", "s.json"}, &out, &errOut); code != 1 || !strings.Contains(out.String(), "S.m: the method is gone") {
		t.Fatalf("compat HEAD:s.json s.json: exit %d\n%s%s", code, out.String(), errOut.String())
	}
}

// amqprpc compat -type T compares packages, described by amqprpc-gen as
// go run runs it in the module here: the calc example's interface as
// committed against a copy with a parameter renamed (breaking), with a
// method added since a new version (safe), and against itself at a git
// revision (REV:DIR), in a module of its own that requires this one.
func TestCompatPackage(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join(root, "examples/calc/calc.go"))
	if err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, body string) {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/calc\n\ngo 1.26\n\nrequire github.com/amqprpc/amqprpc v0.0.0\n\nreplace github.com/amqprpc/amqprpc => "+root+"\n")
	write("go.sum", string(sum))
	write("tools.go", "//go:build tools\n\npackage tools\n\nimport _ \"github.com/amqprpc/amqprpc/cmd/amqprpc-gen\"\n")
	write("calc/calc.go", string(src))
	t.Setenv("GOFLAGS", "-mod=mod")
	git := func(args ...string) {
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@t"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
	}
	git("init", "-q")
	git("add", ".")
	git("commit", "-qm", "calc")
	t.Chdir(dir)

	compat := func(old, new string) (int, string) {
		var out, errOut bytes.Buffer
		code := run([]string{"compat", "-type", "Calculator", old, new}, &out, &errOut)
		return code, out.String() + errOut.String()
	}
	if code, out := compat("HEAD:calc", "./calc"); code != 0 || !strings.Contains(out, "compatible: 0 changes") {
		t.Fatalf("compat HEAD:calc ./calc, unchanged: exit %d\n%s", code, out)
	}
	write("calc/calc.go", strings.Replace(string(src), "Add(v1, v2 int) int", "Add(v1, w2 int) int", 1))
	if code, out := compat("HEAD:calc", "./calc"); code != 1 || !strings.Contains(out, "wire-breaking: Calculator.add: parameter v2 is gone") {
		t.Fatalf("compat HEAD:calc ./calc, a parameter renamed: exit %d\n%s", code, out)
	}
	safe := strings.Replace(string(src), "//amqprpc:version 1.1", "//amqprpc:version 1.2", 1)
	safe = strings.Replace(safe, "\tMemory() int\n", "\tMemory() int\n\t//amqprpc:since 1.2\n\tMul(a, b int) int\n", 1)
	write("calc/calc.go", safe)
	if code, out := compat("HEAD:./calc", "calc"); code != 0 || !strings.Contains(out, "safe: Calculator.mul: a new method, since 1.2") {
		t.Fatalf("compat HEAD:./calc calc, a method added: exit %d\n%s", code, out)
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"compat", "HEAD:calc", "calc"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "name its interfaces with -type") {
		t.Fatalf("compat of packages without -type: exit %d\n%s", code, errOut.String())
	}
}
