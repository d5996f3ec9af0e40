package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/tools/txtar"

	"github.com/amqprpc/amqprpc/describe"
)

// TestCompatRules holds each rule of docs/CONTRACTS.md with a pair of
// versions of an interface, testdata/compat/<case>.txtar:
//
//	-- types --        old: Calculator[,...] and new: Calculator[,...], the
//	                   interfaces of each version
//	-- old/*.go --     the old version's package
//	-- new/*.go --     the new version's
//	-- want/report --  what describe.Compare reports from the generator's
//	                   descriptions of the two, a change a line, and
//	                   whether the check fails
//
// go test -run TestCompatRules -update rewrites want/report. Every rule of
// the table in docs/CONTRACTS.md, with each kind it lists, must be
// reported by at least one case.
func TestCompatRules(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(repoRoot(t), "cmd/amqprpc-gen/testdata/compat/*.txtar"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no cases in testdata/compat: %v", err)
	}
	var reports []string
	for _, path := range paths {
		name := strings.TrimSuffix(filepath.Base(path), ".txtar")
		t.Run(name, func(t *testing.T) { reports = append(reports, compatCase(t, path, name)) })
	}

	doc, err := os.ReadFile(filepath.Join(repoRoot(t), "docs/CONTRACTS.md"))
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(reports, "")
	rows := regexp.MustCompile("(?m)^\\| `([a-z-]+)` \\| ([a-z, -]+) \\|").FindAllStringSubmatch(string(doc), -1)
	if len(rows) < 20 {
		t.Fatalf("docs/CONTRACTS.md: %d rules in the table", len(rows))
	}
	for _, row := range rows {
		if row[2] == string(describe.Unchecked) {
			continue // what the generator's descriptions never lack: describe's TestShapesUnknown
		}
		for kind := range strings.SplitSeq(row[2], ", or ") {
			line := regexp.MustCompile("(?m)^" + regexp.QuoteMeta(kind) + `( \(new major version\))?: .* \[` + regexp.QuoteMeta(row[1]) + `\]$`)
			if !line.MatchString(all) {
				t.Errorf("docs/CONTRACTS.md's rule %s (%s) is reported by no case in testdata/compat", row[1], kind)
			}
		}
	}
}

// compatCase compares the two versions of one case and returns the
// report.
func compatCase(t *testing.T, path, name string) string {
	ar, err := txtar.ParseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Each version is a module of its own, of one path: the declared
	// errors' wire names, their package path and name, are the same.
	dirs := map[string]string{}
	for _, side := range []string{"old", "new"} {
		version := &txtar.Archive{}
		for _, f := range ar.Files {
			if rest, ok := strings.CutPrefix(f.Name, side+"/"); ok {
				version.Files = append(version.Files, txtar.File{Name: rest, Data: f.Data})
			}
		}
		dirs[side] = writeModule(t, "example.com/"+name, version)
	}
	t.Setenv("GOFLAGS", strings.TrimSpace(os.Getenv("GOFLAGS")+" -mod=mod"))
	types := map[string][]string{}
	for line := range strings.Lines(section(ar, "types")) {
		side, names, _ := strings.Cut(strings.TrimSpace(line), ": ")
		types[side] = strings.Split(names, ",")
	}
	describeVersion := func(side string) []describe.Service {
		if len(types[side]) == 0 {
			t.Fatalf("types: no interfaces for %s", side)
		}
		t.Chdir(dirs[side])
		f, diags, err := build(".", nil, filepath.Join(dirs[side], "x_amqprpc.go"), types[side])
		if err != nil || len(diags) > 0 {
			t.Fatalf("%s: %v %v", side, err, diags)
		}
		var services []describe.Service
		for _, svc := range f.services {
			services = append(services, describeService(svc))
		}
		return services
	}
	changes := describe.Compare(describeVersion("old"), describeVersion("new"))
	var b strings.Builder
	for _, c := range changes {
		fmt.Fprintln(&b, c)
	}
	fmt.Fprintf(&b, "fails: %v\n", describe.Breaks(changes))
	got := b.String()
	if check(t, ar, "want/report", section(ar, "want/report"), got) {
		if err := os.WriteFile(path, txtar.Format(ar), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	return got
}
