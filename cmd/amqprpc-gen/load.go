package main

import (
	"cmp"
	"errors"
	"fmt"
	"go/token"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/tools/go/packages"
)

// diagnostic is a problem with the user's code, reported vet-style.
type diagnostic struct {
	pos token.Position
	msg string
}

// errReported says that the problems have been written to stderr already.
var errReported = errors.New("amqprpc-gen: problems reported")

// report writes diags sorted by position, with file names relative to the
// working directory wd where they are below it, and returns errReported.
func report(w io.Writer, wd string, diags []diagnostic) error {
	slices.SortStableFunc(diags, func(a, b diagnostic) int {
		return cmp.Or(cmp.Compare(a.pos.Filename, b.pos.Filename),
			cmp.Compare(a.pos.Line, b.pos.Line), cmp.Compare(a.pos.Column, b.pos.Column))
	})
	for _, d := range diags {
		pos := d.pos
		if rel, err := filepath.Rel(wd, pos.Filename); err == nil && !strings.HasPrefix(rel, "..") {
			pos.Filename = rel
		}
		where := "amqprpc-gen"
		if pos.IsValid() {
			where = pos.String()
		}
		fmt.Fprintf(w, "%s: %s\n", where, d.msg)
	}
	return errReported
}

// loadMode is what the generator needs of a package: its syntax for doc
// comments and positions, and full type information.
const loadMode = packages.NeedName | packages.NeedFiles | packages.NeedSyntax |
	packages.NeedTypes | packages.NeedTypesInfo

// load loads the package in dir.
func load(dir string, tags []string) (*packages.Package, error) {
	cfg := &packages.Config{Mode: loadMode, Dir: dir}
	if len(tags) > 0 {
		cfg.BuildFlags = []string{"-tags=" + strings.Join(tags, ",")}
	}
	pkgs, err := packages.Load(cfg, ".")
	if err != nil {
		return nil, fmt.Errorf("amqprpc-gen: load %s: %w", dir, err)
	}
	switch {
	case len(pkgs) == 0: // go list failed before it could list anything
		return nil, fmt.Errorf("amqprpc-gen: no Go package loaded from %s; `go list` there says why", dir)
	case len(pkgs) > 1:
		return nil, fmt.Errorf("amqprpc-gen: %s holds %d packages, want 1", dir, len(pkgs))
	case pkgs[0].Types == nil || len(pkgs[0].Syntax) == 0:
		return nil, fmt.Errorf("amqprpc-gen: no Go files in %s", dir)
	}
	return pkgs[0], nil
}

// compileErrors returns the errors of pkg as diagnostics, except those that
// generating will fix: errors in the output files, which the generator is
// about to replace (an interface that changed leaves them stale), and uses of
// names that it is about to declare (code that calls the generated client
// before the first generation).
func compileErrors(pkg *packages.Package, outputs map[string]bool, generated map[string]bool) []diagnostic {
	var placed, unplaced []diagnostic
	for _, e := range pkg.Errors {
		pos := parsePos(e.Pos)
		d := diagnostic{pos: pos, msg: "package does not compile: " + e.Msg}
		switch {
		case pos.Filename == "":
			unplaced = append(unplaced, d)
		case outputs[filepath.Clean(pos.Filename)], usesGenerated(e.Msg, generated):
			placed = append(placed, diagnostic{}) // fixed by generating; keeps unplaced out
		default:
			placed = append(placed, d)
		}
	}
	// The go command repeats compile errors without a position when the
	// type checker has reported them with one: report those only alone.
	if len(placed) == 0 {
		return unplaced
	}
	return slices.DeleteFunc(placed, func(d diagnostic) bool { return d.msg == "" })
}

// usesGenerated reports whether a type checker error is about one of the
// generated names: "undefined: NewCalculatorClient", or "c.Sub undefined
// (type *CalculatorClient has no field or method Sub)".
func usesGenerated(msg string, generated map[string]bool) bool {
	if name, ok := strings.CutPrefix(msg, "undefined: "); ok {
		return generated[name]
	}
	if _, typ, ok := strings.Cut(msg, "(type "); ok {
		typ = strings.TrimLeft(typ, "*")
		name, _, _ := strings.Cut(typ, " ")
		return generated[name]
	}
	return false
}

// parsePos parses the "file:line:col" of a packages.Error.
func parsePos(s string) token.Position {
	var pos token.Position
	rest, col, ok := cutLastInt(s)
	if !ok {
		return token.Position{Filename: s}
	}
	if rest2, line, ok := cutLastInt(rest); ok {
		pos.Filename, pos.Line, pos.Column = rest2, line, col
	} else {
		pos.Filename, pos.Line = rest, col
	}
	return pos
}

func cutLastInt(s string) (string, int, bool) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return s, 0, false
	}
	n, err := strconv.Atoi(s[i+1:])
	if err != nil {
		return s, 0, false
	}
	return s[:i], n, true
}
