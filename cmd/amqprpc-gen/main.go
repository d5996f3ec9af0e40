// Amqprpc-gen generates typed RPC clients and servers over RabbitMQ from Go
// interfaces.
//
// Given the name of an interface type T in a package, amqprpc-gen writes a
// Go file next to it, in the same package, that declares:
//
//   - TClient and NewTClient: a client whose methods have T's parameters,
//     take a context.Context first and return an error last (a stream's
//     method returns an iterator that yields it last), and call the
//     method on a server of a topic;
//   - RegisterTServer and T_ServiceDesc: what a runtime.Server needs to
//     serve an implementation of T, dispatching by generated code.
//
// It is meant for go:generate:
//
//	//go:generate go run github.com/amqprpc/amqprpc/cmd/amqprpc-gen -type=Calculator
//	type Calculator interface {
//		Add(v1, v2 int) int
//	}
//
// Usage:
//
//	amqprpc-gen -type=T[,U...] [-output file] [-tags tags] [-description file] [-asyncapi file] [-asyncapi-oslo file] [-describe] [directory]
//
// The directory defaults to the current one; the output file to
// <lower-case first type>_amqprpc.go in that directory. All the types given
// go into that one file.
//
// Methods and their parameters travel under snake_case names: Add(v1, v2)
// is sent as {"method": "add", "args": {"v1": 2, "v2": 3}}. A method may
// take a leading context.Context, and must return nothing, a value, an
// error, or a value and an error; or, to be a stream, one
// iter.Seq2[T, error] alone, whose items its server sends back as they
// come and whose error ends it. Parameters must be named, and the types
// of parameters, results and items must encode to JSON and back: basic
// types, structs, pointers, slices, arrays, maps with string or integer
// keys, named types, types with their own JSON or text encoding.
// amqprpc-gen reports every method that breaks these rules, at its
// position, and exits with status 1; a usage error exits with status 2.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"go/token"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
)

func main() {
	err := run(os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	case errors.Is(err, errReported):
		os.Exit(1)
	default:
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// errUsage says that the command line was wrong; the usage was printed.
var errUsage = errors.New("amqprpc-gen: usage")

const usage = `usage: amqprpc-gen -type=T[,U...] [-output file] [-tags tags] [-description file] [-asyncapi file] [-asyncapi-oslo file] [-describe] [directory]

amqprpc-gen writes a typed amqprpc client and server for each interface
type given, into one file in the package in directory (default ".").
With -describe it prints, instead, the interfaces' description: what
their servers answer amqprpc.describe with, as stable JSON; -description
writes it to a file beside the code, -asyncapi their AsyncAPI 3.0
document, and -asyncapi-oslo that of oslo.messaging's protocol
(runtime.WithOslo).

`

// run is the whole command; main only maps its error to an exit status.
func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("amqprpc-gen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	typeNames := fs.String("type", "", "comma-separated list of interface type names; required")
	output := fs.String("output", "", "output file name; default <directory>/<lower-case type>_amqprpc.go")
	tags := fs.String("tags", "", "comma-separated list of build tags to apply")
	showVersion := fs.Bool("version", false, "print the version and exit")
	describeOnly := fs.Bool("describe", false, "print the interfaces' description (what their servers answer amqprpc.describe with) as JSON, and write no code")
	description := fs.String("description", "", "also write the interfaces' description to this file, to commit beside the code: a diff in review shows what changed on the wire")
	asyncapiOslo := fs.String("asyncapi-oslo", "", "also write the interfaces' AsyncAPI 3.0 document in oslo.messaging's protocol (runtime.WithOslo) to this file")
	asyncapi := fs.String("asyncapi", "", "also write the interfaces' AsyncAPI 3.0 document (JSON) to this file, beside the code: their channels, messages and operations, with JSON Schemas of their values")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage // the flag package has printed the problem and the usage
	}
	if *showVersion {
		fmt.Fprintf(stdout, "amqprpc-gen %s (runtime.%s)\n", version(), runtimeGuard)
		return nil
	}
	if *typeNames == "" || fs.NArg() > 1 {
		fs.Usage()
		return errUsage
	}
	names := strings.Split(*typeNames, ",")
	dir := "."
	if fs.NArg() == 1 {
		dir = fs.Arg(0)
	}

	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	outPath := *output
	var replaced []string // files the new code replaces: their names are not taken
	if *describeOnly && outPath == "" {
		// The code generated for these interfaces before, wherever its
		// go:generate lines put it, is what the new code would replace.
		replaced = generatedFiles(dir, names)
	}
	if outPath == "" {
		outPath = filepath.Join(dir, strings.ToLower(names[0])+"_amqprpc.go")
	}
	outPath, err = filepath.Abs(outPath)
	if err != nil {
		return err
	}

	var tagList []string
	if *tags != "" {
		tagList = strings.Split(*tags, ",")
	}
	f, diags, err := build(dir, tagList, outPath, names, replaced...)
	if err != nil {
		return err
	}
	if len(diags) > 0 {
		return report(stderr, wd, diags)
	}
	if *describeOnly {
		out, err := describeFile(f)
		if err != nil {
			return fmt.Errorf("amqprpc-gen: %w", err)
		}
		_, err = stdout.Write(out)
		return err
	}
	// Everything is made before anything is written: a problem leaves
	// the files as they were.
	src, err := emit(f)
	if err != nil {
		return err
	}
	writes := []struct {
		path string
		make func(*file) ([]byte, error)
	}{{*description, describeFile}, {*asyncapi, asyncapiFile}, {*asyncapiOslo, asyncapiOsloFile}}
	outs := map[string][]byte{outPath: src}
	for _, w := range writes {
		if w.path == "" {
			continue
		}
		out, err := w.make(f)
		if err != nil {
			return fmt.Errorf("amqprpc-gen: %s: %w", w.path, err)
		}
		outs[w.path] = out
	}
	for path, out := range outs {
		if err := os.WriteFile(path, out, 0o666); err != nil {
			return fmt.Errorf("amqprpc-gen: %w", err)
		}
	}
	return nil
}

// generatedFiles returns the files of dir that amqprpc-gen generated for
// any of the interfaces names, by their first line, as absolute paths.
func generatedFiles(dir string, names []string) []string {
	const header = "// Code generated by amqprpc-gen -type="
	paths, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	var found []string
	for _, path := range paths {
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		line, _ := bufio.NewReader(f).ReadString('\n')
		f.Close()
		list, ok := strings.CutPrefix(line, header)
		if !ok {
			continue
		}
		list, _, _ = strings.Cut(list, ";")
		for typ := range strings.SplitSeq(list, ",") {
			if slices.Contains(names, typ) {
				if abs, err := filepath.Abs(path); err == nil {
					found = append(found, abs)
				}
				break
			}
		}
	}
	return found
}

// build loads the package in dir and makes the model of the file to
// generate into outPath for the interfaces names; the files replaced, like
// outPath, are to be replaced by the new code.
func build(dir string, tags []string, outPath string, names []string, replaced ...string) (*file, []diagnostic, error) {
	outputs := map[string]bool{outPath: true}
	for _, r := range replaced {
		outputs[filepath.Clean(r)] = true
	}
	pkg, err := load(dir, tags)
	if err != nil {
		return nil, nil, err
	}
	c := &checker{
		fset:    pkg.Fset,
		pkg:     pkg.Types,
		files:   pkg.Syntax,
		docs:    comments(pkg.Syntax),
		imports: make(map[string]string),
		schemas: newSchemas(pkg.Types),
	}
	f := &file{
		pkgName: pkg.Name,
		pkgPath: pkg.PkgPath,
		command: "amqprpc-gen -type=" + strings.Join(names, ","),
		taken:   make(map[string]bool),
		imports: c.imports,
		schemas: c.schemas.defs,
	}
	scope := pkg.Types.Scope()
	for _, name := range scope.Names() {
		if !outputs[filepath.Clean(pkg.Fset.Position(scope.Lookup(name).Pos()).Filename)] {
			f.taken[name] = true
		}
	}

	generated := make(map[string]bool)
	generatedFor := make(map[string]string) // name -> the interface it is generated for
	seen := make(map[string]bool)
	for _, name := range names {
		if seen[name] {
			continue
		}
		seen[name] = true
		svc := c.service(name, token.NoPos)
		if svc == nil {
			continue
		}
		svc.types = reachable(svc, c.schemas.defs)
		f.services = append(f.services, svc)
		for _, n := range declaredNames(svc) {
			generated[n] = true
			if f.taken[n] {
				c.errorf(scope.Lookup(n).Pos(), "%s: the generated code declares %s, which this package already declares", name, n)
			}
			if other, dup := generatedFor[n]; dup {
				c.errorf(scope.Lookup(name).Pos(), "%s: the generated code declares %s for both %s and %s", name, n, other, name)
			}
			generatedFor[n] = name
		}
	}
	// A package that does not compile is reported alone: the types of its
	// interfaces may be broken too, and problems found in them would mislead.
	if diags := compileErrors(pkg, outputs, generated); len(diags) > 0 {
		return nil, diags, nil
	}
	return f, c.diags, nil
}

// version is the module version amqprpc-gen was built from.
func version() string {
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" {
		return info.Main.Version
	}
	return "(devel)"
}
