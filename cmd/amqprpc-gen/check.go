package main

import (
	"fmt"
	"go/ast"
	"go/token"
	"go/types"
	"reflect"
	"strconv"
	"strings"
)

// checker builds the model of interfaces from their go/types description
// and collects every reason they cannot be served, so that the user sees
// all problems at once.
type checker struct {
	fset    *token.FileSet
	pkg     *types.Package
	files   []*ast.File
	docs    map[token.Pos]*ast.CommentGroup // doc comments by name position
	imports map[string]string               // import path -> package name of the types used
	schemas *schemas                        // the JSON Schemas of the types used
	diags   []diagnostic
}

func (c *checker) errorf(pos token.Pos, format string, args ...any) {
	c.diags = append(c.diags, diagnostic{pos: c.fset.Position(pos), msg: fmt.Sprintf(format, args...)})
}

// typeString spells t as the user's package sees it.
func (c *checker) typeString(t types.Type) string {
	return types.TypeString(t, types.RelativeTo(c.pkg))
}

// service builds the model of the interface named name, or returns nil
// after reporting why it cannot.
func (c *checker) service(name string, pos token.Pos) *service {
	obj := c.pkg.Scope().Lookup(name)
	if obj == nil {
		c.errorf(pos, "-type=%s: no such type in package %s", name, c.pkg.Name())
		return nil
	}
	tn, ok := obj.(*types.TypeName)
	if !ok {
		c.errorf(obj.Pos(), "-type=%s: %s is a %s, not an interface type", name, name, objectKind(obj))
		return nil
	}
	if named, ok := types.Unalias(tn.Type()).(*types.Named); ok && named.TypeParams().Len() > 0 {
		c.errorf(obj.Pos(), "%s: interfaces with type parameters cannot be served", name)
		return nil
	}
	iface, ok := tn.Type().Underlying().(*types.Interface)
	if !ok {
		c.errorf(obj.Pos(), "-type=%s: %s is not an interface type (it is %s)", name, name, c.typeString(tn.Type().Underlying()))
		return nil
	}
	if !iface.IsMethodSet() {
		c.errorf(obj.Pos(), "%s: constraint interfaces cannot be served", name)
		return nil
	}
	if iface.NumMethods() == 0 {
		c.errorf(obj.Pos(), "%s: interface has no methods to serve", name)
		return nil
	}

	svc := &service{name: name, clientImplements: true}
	for _, d := range directives(c.docs[obj.Pos()]) {
		switch d.name {
		case "version":
			if len(d.args) != 1 || !validVersion(d.args[0]) {
				c.errorf(d.pos, "%s: //amqprpc:version wants one major.minor version, such as 1.0", name)
				continue
			}
			svc.version = d.args[0]
		case "errors":
			if len(d.args) == 0 {
				c.errorf(d.pos, "%s: //amqprpc:errors wants the errors' names", name)
			}
			for _, arg := range d.args {
				if ref, ok := c.errorRef(name, d.pos, obj.Pos(), arg); ok {
					svc.errors = append(svc.errors, ref)
				}
			}
		case "namespace":
			if len(d.args) != 1 || strings.ContainsFunc(d.args[0], func(r rune) bool { return r <= ' ' || r == '"' }) {
				c.errorf(d.pos, "%s: //amqprpc:namespace wants one name without spaces, control characters or quotes", name)
				continue
			}
			svc.namespace = d.args[0]
		default:
			c.errorf(d.pos, "%s: unknown directive //amqprpc:%s on an interface (want version, namespace or errors)", name, d.name)
		}
	}

	byWire := make(map[string]string)
	clientNames := map[string]string{"ToServer": "the client's ToServer", "WithVersionCap": "the client's WithVersionCap"}
	for fn := range iface.Methods() {
		if prev, ok := clientNames[fn.Name()]; ok {
			c.errorf(fn.Pos(), "%s.%s: the name is taken by %s method; rename the method", name, fn.Name(), prev)
		}
	}
	for fn := range iface.Methods() {
		m := c.method(svc, fn)
		if m == nil {
			svc.clientImplements = false
			continue
		}
		if prev, ok := byWire[m.wire]; ok {
			c.errorf(fn.Pos(), "%s.%s: wire name %q is also the wire name of %s", name, fn.Name(), m.wire, prev)
			continue
		}
		byWire[m.wire] = fn.Name()
		if m.gather {
			g := "Gather" + m.name
			if hasMethodNamed(iface, g) {
				c.errorf(fn.Pos(), "%s.%s: //amqprpc:gather generates a client method %s, which the interface already has", name, fn.Name(), g)
				continue
			}
		}
		svc.methods = append(svc.methods, m)
		// The client's method has the interface's signature when the
		// method is context-first and error-last, or a context-first stream.
		if !m.hasCtx || !(m.hasErr || m.mode == streamMode) {
			svc.clientImplements = false
		}
	}
	return svc
}

func hasMethodNamed(iface *types.Interface, name string) bool {
	for fn := range iface.Methods() {
		if fn.Name() == name {
			return true
		}
	}
	return false
}

// validVersion reports whether v is "major.minor".
func validVersion(v string) bool {
	_, _, ok := parseVersion(v)
	return ok
}

// parseVersion parses "major.minor".
func parseVersion(v string) (major, minor int, ok bool) {
	a, b, found := strings.Cut(v, ".")
	major, err1 := strconv.Atoi(a)
	minor, err2 := strconv.Atoi(b)
	return major, minor, found && err1 == nil && err2 == nil && major >= 0 && minor >= 0
}

// errorRef resolves a name given to //amqprpc:errors: a variable of an
// error type (a sentinel), or a type T or *T implementing error, declared
// in this package or, qualified by its package name, in one the file of
// the interface at ifacePos imports.
func (c *checker) errorRef(iface string, pos, ifacePos token.Pos, arg string) (errorRef, bool) {
	name, pointer := strings.CutPrefix(arg, "*")
	scope := c.pkg.Scope()
	if q, n, ok := strings.Cut(name, "."); ok {
		imp := c.importNamed(ifacePos, q)
		if imp == nil {
			c.errorf(pos, "%s: //amqprpc:errors %s: no import named %s in the interface's file", iface, arg, q)
			return errorRef{}, false
		}
		scope, name = imp.Scope(), n
	}
	obj := scope.Lookup(name)
	if obj == nil || (obj.Pkg() != c.pkg && !obj.Exported()) {
		c.errorf(pos, "%s: //amqprpc:errors %s: no such error variable or type", iface, arg)
		return errorRef{}, false
	}
	ref := errorRef{path: obj.Pkg().Path(), name: obj.Name(), pointer: pointer}
	errorType := types.Universe.Lookup("error").Type().Underlying().(*types.Interface)
	switch obj := obj.(type) {
	case *types.Var:
		if pointer || !types.Implements(obj.Type(), errorType) {
			c.errorf(pos, "%s: //amqprpc:errors %s: a sentinel must be a variable of an error type", iface, arg)
			return errorRef{}, false
		}
	case *types.TypeName:
		t := obj.Type()
		if pointer {
			t = types.NewPointer(t)
		}
		if !types.Implements(t, errorType) {
			c.errorf(pos, "%s: //amqprpc:errors %s: %s does not implement error", iface, arg, c.typeString(t))
			return errorRef{}, false
		}
		if why := c.wireProblem(obj.Type(), nil); why != "" {
			c.errorf(pos, "%s: //amqprpc:errors %s: its value cannot cross the wire: %s", iface, arg, why)
			return errorRef{}, false
		}
		ref.typed = true
	default:
		c.errorf(pos, "%s: //amqprpc:errors %s: not an error variable or type", iface, arg)
		return errorRef{}, false
	}
	if ref.path != c.pkg.Path() {
		c.imports[ref.path] = obj.Pkg().Name()
	}
	return ref, true
}

// importNamed returns the package that the file holding pos imports under
// name, or nil.
func (c *checker) importNamed(pos token.Pos, name string) *types.Package {
	for _, f := range c.files {
		if f.FileStart > pos || pos > f.FileEnd {
			continue
		}
		for _, spec := range f.Imports {
			path, _ := strconv.Unquote(spec.Path.Value)
			for _, imp := range c.pkg.Imports() {
				if imp.Path() != path {
					continue
				}
				local := imp.Name()
				if spec.Name != nil {
					local = spec.Name.Name
				}
				if local == name {
					return imp
				}
			}
		}
	}
	return nil
}

func objectKind(obj types.Object) string {
	switch obj.(type) {
	case *types.Func:
		return "function"
	case *types.Var:
		return "variable"
	case *types.Const:
		return "constant"
	}
	return "declaration"
}

// method builds the model of one method of svc, or returns nil after
// reporting every reason it cannot be served.
func (c *checker) method(svc *service, fn *types.Func) *method {
	where := svc.name + "." + fn.Name()
	ok := true
	fail := func(pos token.Pos, format string, args ...any) {
		c.errorf(pos, where+": "+format, args...)
		ok = false
	}
	if !fn.Exported() {
		fail(fn.Pos(), "unexported methods cannot be served")
	}
	sig := fn.Signature()
	doc := c.docs[fn.Pos()]
	m := &method{
		name:     fn.Name(),
		wire:     wireName(fn.Name()),
		doc:      doc.Text(),
		pos:      c.fset.Position(fn.Pos()),
		variadic: sig.Variadic(),
	}
	if svc.version != "" {
		major, _, _ := parseVersion(svc.version)
		m.since = strconv.Itoa(major) + ".0"
	}

	params := sig.Params()
	first := 0
	if params.Len() > 0 && isContext(params.At(0).Type()) {
		m.hasCtx, m.ctxName, first = true, params.At(0).Name(), 1
	}
	byWire := make(map[string]string)
	for i := first; i < params.Len(); i++ {
		p := params.At(i)
		switch {
		case isContext(p.Type()):
			fail(p.Pos(), "context.Context must be the first parameter")
			continue
		case p.Name() == "" || p.Name() == "_":
			fail(p.Pos(), "parameter %d (%s) needs a name: it is the argument's name on the wire", i+1, c.typeString(p.Type()))
			continue
		}
		if why := c.wireProblem(p.Type(), nil); why != "" {
			fail(p.Pos(), "parameter %s of type %s cannot cross the wire: %s", p.Name(), c.typeString(p.Type()), why)
			continue
		}
		pm := &param{name: p.Name(), wire: wireName(p.Name()), field: exportedName(p.Name()), typ: c.typeOf(p.Type()), goType: c.typeString(p.Type()), shape: jsonShape(p.Type()), schema: c.schemas.of(p.Type())}
		if prev, dup := byWire[pm.wire]; dup {
			fail(p.Pos(), "parameters %s and %s have the same wire name %q", prev, p.Name(), pm.wire)
			continue
		}
		byWire[pm.wire] = p.Name()
		m.params = append(m.params, pm)
	}

	if results := sig.Results(); iterates(results) {
		c.streamResult(m, fn, results, fail)
	} else {
		c.callResults(m, fn, results, fail)
	}

	for _, d := range directives(doc) {
		c.methodDirective(svc, m, d, fail)
	}
	if !ok {
		return nil
	}
	return m
}

// callResults builds the results of m, a method that is not a stream:
// none, values, an error last, or values and an error last.
func (c *checker) callResults(m *method, fn *types.Func, results *types.Tuple, fail func(token.Pos, string, ...any)) {
	n := results.Len()
	if n > 0 && isError(results.At(n-1).Type()) {
		m.hasErr = true
		n--
	}
	byWire := make(map[string]string)
	for i := range n {
		r := results.At(i)
		if isError(r.Type()) {
			fail(fn.Pos(), "results %s: error must come last", c.typeString(results))
			break
		}
		if why := c.wireProblem(r.Type(), nil); why != "" {
			fail(r.Pos(), "result of type %s cannot cross the wire: %s", c.typeString(r.Type()), why)
			continue
		}
		rm := &param{name: r.Name(), typ: c.typeOf(r.Type()), goType: c.typeString(r.Type()), shape: jsonShape(r.Type()), schema: c.schemas.of(r.Type())}
		if r.Name() == "" || r.Name() == "_" {
			rm.name, rm.wire, rm.field = "", fmt.Sprintf("r%d", i+1), fmt.Sprintf("R%d", i+1)
		} else {
			rm.wire, rm.field = wireName(r.Name()), exportedName(r.Name())
		}
		if prev, dup := byWire[rm.wire]; dup {
			fail(r.Pos(), "results %s and %s have the same wire name %q", prev, r.Name(), rm.wire)
			continue
		}
		byWire[rm.wire] = r.Name()
		m.results = append(m.results, rm)
	}
}

// methodDirective applies directive d to m, or reports why it cannot.
func (c *checker) methodDirective(svc *service, m *method, d directive, fail func(token.Pos, string, ...any)) {
	args := func(n int) bool {
		if len(d.args) != n {
			fail(d.pos, "//amqprpc:%s wants %d argument(s), got %d", d.name, n, len(d.args))
			return false
		}
		return true
	}
	switch d.name {
	case "cast", "fanout":
		if !args(0) {
			return
		}
		if m.mode == streamMode {
			fail(d.pos, "//amqprpc:%s: a stream method sends many items back; it cannot be a %s", d.name, d.name)
			return
		}
		if m.mode != callMode || m.gather {
			fail(d.pos, "//amqprpc:%s: cast, fanout and gather exclude each other", d.name)
			return
		}
		if len(m.results) > 0 {
			fail(d.pos, "//amqprpc:%s: a %s gets no reply, so the method may return nothing but an error", d.name, d.name)
			return
		}
		m.mode = castMode
		if d.name == "fanout" {
			m.mode = fanoutMode
		}
	case "gather":
		if !args(0) {
			return
		}
		if m.mode == streamMode {
			fail(d.pos, "//amqprpc:gather: a stream method sends many items back; it cannot be gathered")
			return
		}
		if m.mode != callMode {
			fail(d.pos, "//amqprpc:gather: cast, fanout and gather exclude each other")
			return
		}
		if len(m.results) > 1 {
			fail(d.pos, "//amqprpc:gather: a gathered method returns at most one value")
			return
		}
		m.gather = true
	case "name":
		if !args(1) {
			return
		}
		if strings.ContainsFunc(d.args[0], func(r rune) bool { return r <= ' ' || r == '"' }) {
			fail(d.pos, "//amqprpc:name %s: a wire name has no spaces, control characters or quotes", d.args[0])
			return
		}
		if strings.HasPrefix(d.args[0], "amqprpc.") {
			fail(d.pos, "//amqprpc:name %s: names beginning with amqprpc. are the runtime's (amqprpc.describe)", d.args[0])
			return
		}
		m.wire = d.args[0]
	case "since":
		if !args(1) {
			return
		}
		if svc.version == "" {
			fail(d.pos, "//amqprpc:since needs the interface's version: add //amqprpc:version to %s", svc.name)
			return
		}
		vMaj, vMin, _ := parseVersion(svc.version)
		sMaj, sMin, ok := parseVersion(d.args[0])
		if !ok || sMaj != vMaj || sMin > vMin {
			fail(d.pos, "//amqprpc:since %s: want a version from %d.0 to %s, the interface's", d.args[0], vMaj, svc.version)
			return
		}
		m.since = d.args[0]
	default:
		fail(d.pos, "unknown directive //amqprpc:%s on a method (want cast, fanout, gather, name or since)", d.name)
	}
}

func isContext(t types.Type) bool { return isNamed(t, "context", "Context") }

func isError(t types.Type) bool { return types.Identical(t, types.Universe.Lookup("error").Type()) }

func isNamed(t types.Type, path, name string) bool {
	n, ok := types.Unalias(t).(*types.Named)
	if !ok {
		return false
	}
	obj := n.Obj()
	return obj.Pkg() != nil && obj.Pkg().Path() == path && obj.Name() == name
}

// wireProblem says why a value of type t cannot be sent as JSON and decoded
// back into a t, or returns "" if it can. seen breaks cycles through named
// types.
func (c *checker) wireProblem(t types.Type, seen map[*types.Named]bool) string {
	if named, ok := t.(*types.Named); ok || isAlias(t) {
		obj := typeName(t)
		if obj.Pkg() != nil && obj.Pkg() != c.pkg && !obj.Exported() {
			return fmt.Sprintf("%s is not exported by its package", c.typeString(t))
		}
		if ok {
			if seen[named] {
				return ""
			}
			if seen == nil {
				seen = make(map[*types.Named]bool)
			}
			seen[named] = true
		}
	}
	if custom, complete := customJSON(t); custom && complete {
		return ""
	}
	switch u := t.Underlying().(type) {
	case *types.Basic:
		switch {
		case u.Kind() == types.Invalid:
			return "the type is invalid"
		case u.Kind() == types.UnsafePointer:
			return "unsafe.Pointer has no JSON form"
		case u.Info()&types.IsComplex != 0:
			return "complex numbers have no JSON form"
		}
		return ""
	case *types.Pointer:
		return c.wireProblem(u.Elem(), seen)
	case *types.Slice:
		return c.wireProblem(u.Elem(), seen)
	case *types.Array:
		return c.wireProblem(u.Elem(), seen)
	case *types.Map:
		if !mapKeyOK(u.Key()) {
			return fmt.Sprintf("map key type %s is not a string, an integer or a text marshaler", c.typeString(u.Key()))
		}
		return c.wireProblem(u.Elem(), seen)
	case *types.Struct:
		for i := range u.NumFields() {
			f := u.Field(i)
			if (!f.Exported() && !f.Embedded()) || jsonName(u.Tag(i)) == "-" {
				continue
			}
			if why := c.wireProblem(f.Type(), seen); why != "" {
				return fmt.Sprintf("field %s: %s", f.Name(), why)
			}
		}
		return ""
	case *types.Interface:
		if u.Empty() {
			return "" // decodes as JSON's own types: map[string]any, []any, float64, ...
		}
		return fmt.Sprintf("interface %s cannot be decoded into a concrete type", c.typeString(t))
	case *types.Chan:
		return "channels have no JSON form"
	case *types.Signature:
		return "functions have no JSON form"
	case *types.TypeParam:
		return "type parameters cannot be sent"
	}
	return fmt.Sprintf("%s has no JSON form", c.typeString(t))
}

func isAlias(t types.Type) bool { _, ok := t.(*types.Alias); return ok }

func typeName(t types.Type) *types.TypeName {
	switch t := t.(type) {
	case *types.Named:
		return t.Obj()
	case *types.Alias:
		return t.Obj()
	}
	return nil
}

// customJSON reports whether t encodes itself (MarshalJSON or MarshalText)
// and whether it also decodes itself, so that its structure does not matter.
func customJSON(t types.Type) (custom, complete bool) {
	enc := hasMethod(t, "MarshalJSON") || hasMethod(t, "MarshalText")
	dec := hasMethod(types.NewPointer(t), "UnmarshalJSON") || hasMethod(types.NewPointer(t), "UnmarshalText")
	return enc || dec, enc && dec
}

func hasMethod(t types.Type, name string) bool {
	if _, isPtr := t.Underlying().(*types.Pointer); isPtr {
		if _, named := types.Unalias(t).(*types.Named); named {
			return false // a named pointer type has no methods
		}
	}
	obj, _, _ := types.LookupFieldOrMethod(t, true, nil, name)
	_, ok := obj.(*types.Func)
	return ok
}

// mapKeyOK reports whether encoding/json can use t as a map key.
func mapKeyOK(t types.Type) bool {
	if hasMethod(t, "MarshalText") && hasMethod(types.NewPointer(t), "UnmarshalText") {
		return true
	}
	b, ok := t.Underlying().(*types.Basic)
	return ok && (b.Info()&types.IsString != 0 || b.Info()&types.IsInteger != 0)
}

// jsonName returns the name a struct tag gives a field in JSON.
func jsonName(tag string) string {
	name, _, _ := strings.Cut(reflect.StructTag(tag).Get("json"), ",")
	return name
}

// typeOf converts a type that passed wireProblem into the model, recording
// the packages its spelling imports.
func (c *checker) typeOf(t types.Type) *typ {
	if obj := typeName(t); obj != nil {
		m := &typ{kind: namedKind, name: obj.Name()}
		if obj.Pkg() != nil {
			m.path = obj.Pkg().Path()
			if obj.Pkg() != c.pkg {
				c.imports[m.path] = obj.Pkg().Name()
			}
		} else if obj.Name() == "any" {
			return &typ{kind: anyKind}
		}
		var targs *types.TypeList
		switch t := t.(type) {
		case *types.Named:
			targs = t.TypeArgs()
		case *types.Alias:
			targs = t.TypeArgs()
		}
		for a := range targs.Types() {
			m.args = append(m.args, c.typeOf(a))
		}
		return m
	}
	switch t := t.(type) {
	case *types.Basic:
		return &typ{kind: basicKind, name: t.Name()}
	case *types.Pointer:
		return &typ{kind: pointerKind, elem: c.typeOf(t.Elem())}
	case *types.Slice:
		return &typ{kind: sliceKind, elem: c.typeOf(t.Elem())}
	case *types.Array:
		return &typ{kind: arrayKind, len: t.Len(), elem: c.typeOf(t.Elem())}
	case *types.Map:
		return &typ{kind: mapKind, key: c.typeOf(t.Key()), elem: c.typeOf(t.Elem())}
	case *types.Struct:
		m := &typ{kind: structKind}
		for i := range t.NumFields() {
			f := t.Field(i)
			m.fields = append(m.fields, field{name: f.Name(), typ: c.typeOf(f.Type()), tag: t.Tag(i), embedded: f.Embedded()})
		}
		return m
	case *types.Interface:
		return &typ{kind: anyKind}
	}
	panic(fmt.Sprintf("amqprpc-gen: typeOf(%s): type passed the checks but has no model", t))
}

// jsonShape names the JSON that a value of t travels as, for descriptions
// that tools read: integer, number, string, boolean, array, object, or any
// for a type with an encoding of its own.
func jsonShape(t types.Type) string {
	switch {
	case isNamed(t, "time", "Time"):
		return "string"
	case isNamed(t, "encoding/json", "Number"):
		return "number" // its text, unquoted
	}
	ms := types.NewMethodSet(types.NewPointer(t))
	switch {
	case ms.Lookup(nil, "MarshalJSON") != nil:
		return "any"
	case ms.Lookup(nil, "MarshalText") != nil:
		return "string"
	}
	switch u := t.Underlying().(type) {
	case *types.Basic:
		switch info := u.Info(); {
		case info&types.IsInteger != 0:
			return "integer"
		case info&types.IsFloat != 0:
			return "number"
		case info&types.IsString != 0:
			return "string"
		case info&types.IsBoolean != 0:
			return "boolean"
		}
	case *types.Pointer:
		return jsonShape(u.Elem())
	case *types.Slice:
		if b, ok := u.Elem().Underlying().(*types.Basic); ok && b.Kind() == types.Byte {
			return "string" // base64
		}
		return "array"
	case *types.Array:
		return "array"
	case *types.Map, *types.Struct:
		return "object"
	}
	return "any"
}
