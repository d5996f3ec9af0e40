package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/tools/txtar"
)

func TestUsage(t *testing.T) {
	for _, args := range [][]string{{}, {"a", "b"}, {"-type=A", "dir1", "dir2"}} {
		var stdout, stderr bytes.Buffer
		if err := run(args, &stdout, &stderr); !errors.Is(err, errUsage) {
			t.Errorf("run(%q) = %v; want errUsage", args, err)
		}
		if !strings.HasPrefix(stderr.String(), "usage: amqprpc-gen -type=") {
			t.Errorf("run(%q) printed %q; want the usage", args, stderr.String())
		}
	}
}

func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run([]string{"-version"}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stdout.String(), "amqprpc-gen ") || !strings.Contains(stdout.String(), runtimeGuard) {
		t.Errorf("-version printed %q", stdout.String())
	}
}

// TestModel checks the model stage alone, without emitting.
func TestModel(t *testing.T) {
	ar, err := txtar.ParseFile(filepath.Join(repoRoot(t), "cmd/amqprpc-gen/testdata/forms.txtar"))
	if err != nil {
		t.Fatal(err)
	}
	dir := writeModule(t, "example.com/forms", ar)
	t.Setenv("GOFLAGS", strings.TrimSpace(os.Getenv("GOFLAGS")+" -mod=mod"))
	f, diags, err := build(dir, nil, filepath.Join(dir, "out.go"), []string{"Forms", "Store", "Forms"})
	if err != nil || len(diags) > 0 {
		t.Fatalf("build: %v %v", err, diags)
	}
	if len(f.services) != 2 {
		t.Fatalf("%d services; want Forms and Store once each", len(f.services))
	}
	forms, store := f.services[0], f.services[1]
	if forms.clientImplements || !store.clientImplements {
		t.Errorf("clientImplements: Forms %v, Store %v; want false, true", forms.clientImplements, store.clientImplements)
	}
	byName := make(map[string]*method)
	for _, m := range forms.methods {
		byName[m.name] = m
	}
	m := byName["GetInstanceID"]
	if m == nil || m.wire != "get_instance_id" || len(m.params) != 2 ||
		m.params[0].wire != "instance_id" || m.params[1].wire != "http_code" || m.params[1].field != "HTTPCode" {
		t.Errorf("GetInstanceID model = %+v", m)
	}
	if m := byName["WithContext"]; m == nil || !m.hasCtx || m.ctxName != "ctx" || !m.hasErr || len(m.results) != 1 || m.results[0].typ.name != "int" {
		t.Errorf("WithContext model = %+v", m)
	}
	if m := byName["UnnamedContext"]; m == nil || !m.hasCtx || m.ctxName != "" || len(m.params) != 0 {
		t.Errorf("UnnamedContext model = %+v", m)
	}
	if m := byName["Sum"]; m == nil || !m.variadic || m.params[1].typ.kind != sliceKind {
		t.Errorf("Sum model = %+v", m)
	}
	if m := byName["Notify"]; m == nil || m.doc != "Notify has no results.\n\nIts doc comment has two paragraphs.\n" {
		t.Errorf("Notify doc = %q", m.doc)
	}
}

// TestStreamModel checks the model of stream methods: their items in
// place of results, and which clients implement their interface.
func TestStreamModel(t *testing.T) {
	ar, err := txtar.ParseFile(filepath.Join(repoRoot(t), "cmd/amqprpc-gen/testdata/streams.txtar"))
	if err != nil {
		t.Fatal(err)
	}
	dir := writeModule(t, "example.com/streams", ar)
	t.Setenv("GOFLAGS", strings.TrimSpace(os.Getenv("GOFLAGS")+" -mod=mod"))
	f, diags, err := build(dir, nil, filepath.Join(dir, "out.go"), []string{"Feed", "Tail"})
	if err != nil || len(diags) > 0 {
		t.Fatalf("build: %v %v", err, diags)
	}
	feed, tail := f.services[0], f.services[1]
	if feed.clientImplements || !tail.clientImplements {
		t.Errorf("clientImplements: Feed %v, Tail %v; want false (Numbers takes no context), true", feed.clientImplements, tail.clientImplements)
	}
	for _, m := range append(feed.methods, tail.methods...) {
		stream := m.name != "Size" && m.name != "Stop"
		if got := m.mode == streamMode; got != stream {
			t.Errorf("%s: stream %v; want %v", m.name, got, stream)
		}
		if stream && (m.item == nil || m.item.wire != "item" || len(m.results) > 0 || m.hasErr) {
			t.Errorf("%s: item %+v, results %v, hasErr %v; want an item and no results", m.name, m.item, m.results, m.hasErr)
		}
	}
	lines := feed.methods[0]
	if lines.name != "Lines" || lines.wire != "read_lines" || lines.since != "1.2" || lines.item.goType != "*string" || lines.item.typ.kind != pointerKind {
		t.Errorf("Lines model = %+v, item %+v", lines, lines.item)
	}
	if follow := tail.methods[0]; follow.item.goType != "Event" || follow.item.shape != "object" {
		t.Errorf("Follow's item = %+v; want Event, an object", follow.item)
	}
}

// TestRuntimeGuard builds generated code against a runtime without the
// version constant it refers to: the build must fail and name it.
func TestRuntimeGuard(t *testing.T) {
	root := repoRoot(t)
	ar, err := txtar.ParseFile(filepath.Join(root, "cmd/amqprpc-gen/testdata/calc.txtar"))
	if err != nil {
		t.Fatal(err)
	}
	dir := writeModule(t, "example.com/calc", ar)
	want, _ := sectionOK(ar, "want/calc_amqprpc.go")
	if err := os.WriteFile(filepath.Join(dir, "calc_amqprpc.go"), []byte(want), 0o666); err != nil {
		t.Fatal(err)
	}

	// A copy of the runtime from an older version: no SupportPackageIsVersion3.
	stub := t.TempDir()
	for _, pkg := range []string{"runtime", "describe", "internal/amqpio", "internal/wire"} {
		copyDir(t, filepath.Join(root, pkg), filepath.Join(stub, pkg))
	}
	desc := filepath.Join(stub, "runtime", "desc.go")
	src, err := os.ReadFile(desc)
	if err != nil {
		t.Fatal(err)
	}
	src = bytes.Replace(src, []byte("const SupportPackageIsVersion3 = true"), []byte("const SupportPackageIsVersion1 = true"), 1)
	for name, data := range map[string][]byte{
		"runtime/desc.go": src,
		"go.mod":          []byte("module github.com/amqprpc/amqprpc\n\ngo 1.26\n\nrequire (\n\tgithub.com/google/uuid v1.6.0\n\tgithub.com/rabbitmq/amqp091-go v1.16.0\n)\n"),
	} {
		if err := os.WriteFile(filepath.Join(stub, name), data, 0o666); err != nil {
			t.Fatal(err)
		}
	}
	gomod := filepath.Join(dir, "go.mod")
	mod, _ := os.ReadFile(gomod)
	mod = bytes.Replace(mod, []byte("=> "+root), []byte("=> "+stub), 1)
	if err := os.WriteFile(gomod, mod, 0o666); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOFLAGS", strings.TrimSpace(os.Getenv("GOFLAGS")+" -mod=mod"))
	goCmd(t, dir, "undefined: runtime.SupportPackageIsVersion3", "build", "./...")
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.CopyFS(to, os.DirFS(from)); err != nil {
		t.Fatal(err)
	}
}

// TestExitStatus runs the built command: 2 for a usage error, 1 for
// problems in the code, 0 otherwise.
func TestExitStatus(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "amqprpc-gen")
	goCmd(t, ".", "", "build", "-o", bin, ".")
	ar, err := txtar.ParseFile(filepath.Join(repoRoot(t), "cmd/amqprpc-gen/testdata/diag_names.txtar"))
	if err != nil {
		t.Fatal(err)
	}
	dir := writeModule(t, "example.com/names", ar)
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"-version"}, 0},
		{[]string{"-h"}, 0},
		{nil, 2},
		{[]string{"-nosuchflag"}, 2},
		{[]string{"-type=Calculator", dir}, 1},
	} {
		cmd := exec.Command(bin, tc.args...)
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
		out, _ := cmd.CombinedOutput()
		if got := cmd.ProcessState.ExitCode(); got != tc.want {
			t.Errorf("amqprpc-gen %q exited %d; want %d\n%s", tc.args, got, tc.want, out)
		}
	}
}
