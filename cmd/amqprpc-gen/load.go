package main

import (
	"cmp"
	"errors"
	"fmt"
	"go/ast"
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

// load loads the package in dir. Errors in the file at output, which the
// generator is about to replace, are ignored: an interface that changed
// leaves the previous generated code stale, and regenerating must fix that.
// Any other error in the package is a diagnostic.
func load(dir string, tags []string, output string) (*packages.Package, []diagnostic, error) {
	cfg := &packages.Config{Mode: loadMode, Dir: dir}
	if len(tags) > 0 {
		cfg.BuildFlags = []string{"-tags=" + strings.Join(tags, ",")}
	}
	pkgs, err := packages.Load(cfg, ".")
	if err != nil {
		return nil, nil, fmt.Errorf("amqprpc-gen: load %s: %w", dir, err)
	}
	if len(pkgs) != 1 {
		return nil, nil, fmt.Errorf("amqprpc-gen: %s holds %d packages, want 1", dir, len(pkgs))
	}
	pkg := pkgs[0]
	var diags []diagnostic
	for _, e := range pkg.Errors {
		pos := parsePos(e.Pos)
		if pos.Filename != "" && filepath.Clean(pos.Filename) == output {
			continue
		}
		diags = append(diags, diagnostic{pos: pos, msg: "package does not compile: " + e.Msg})
	}
	if len(diags) == 0 && pkg.Types == nil {
		diags = append(diags, diagnostic{msg: fmt.Sprintf("no Go package in %s", dir)})
	}
	return pkg, diags, nil
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

// methodDocs maps the position of each method name declared in an
// interface type in files to the method's doc comment.
func methodDocs(files []*ast.File) map[token.Pos]*ast.CommentGroup {
	docs := make(map[token.Pos]*ast.CommentGroup)
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			it, ok := n.(*ast.InterfaceType)
			if !ok {
				return true
			}
			for _, fld := range it.Methods.List {
				if len(fld.Names) == 1 && fld.Doc != nil {
					docs[fld.Names[0].Pos()] = fld.Doc
				}
			}
			return true
		})
	}
	return docs
}
