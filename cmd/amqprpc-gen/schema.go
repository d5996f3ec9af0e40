package main

import (
	"go/types"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/amqprpc/amqprpc/describe"
)

// The JSON Schema of the values a method sends and receives, for the
// AsyncAPI document (-asyncapi). It is computed here, from go/types, and
// kept in the model as plain values: the schema of each parameter, result
// and stream item, and the named struct types they refer to, which the
// document lists under components.schemas.

// schema is a JSON Schema, as descriptions carry it and the AsyncAPI
// document lists it. The zero schema is {}: any JSON value.
type schema = describe.Schema

// schemaRefPrefix is where references to named types point: the
// description's types (the AsyncAPI document rebases them).
const schemaRefPrefix = describe.TypeRef

// schemas builds the schemas of the types of one package's interfaces,
// and collects the named struct types they use.
type schemas struct {
	pkg   *types.Package     // the interfaces' package: its types go by their bare names
	defs  map[string]*schema // components.schemas, by name
	names map[string]string  // a named type's identity (its type string) -> its name in defs
	// inline holds the named non-struct types being expanded, to cut a
	// cycle through them (type Tree []Tree) with {}.
	inline map[string]bool
}

func newSchemas(pkg *types.Package) *schemas {
	return &schemas{pkg: pkg, defs: make(map[string]*schema), names: make(map[string]string), inline: make(map[string]bool)}
}

// of returns the schema of the JSON that encoding/json makes of a t.
func (s *schemas) of(t types.Type) *schema {
	switch {
	case isNamed(t, "time", "Time"):
		return &schema{Type: "string", Format: "date-time"}
	case isNamed(t, "encoding/json", "Number"):
		return &schema{Type: "number"}
	}
	ms := types.NewMethodSet(types.NewPointer(t))
	switch {
	case ms.Lookup(nil, "MarshalJSON") != nil:
		return &schema{} // its own encoding: anything
	case ms.Lookup(nil, "MarshalText") != nil:
		return &schema{Type: "string"} // encoding/json quotes the text
	}
	if named, ok := types.Unalias(t).(*types.Named); ok {
		if _, isStruct := named.Underlying().(*types.Struct); isStruct {
			return &schema{Ref: schemaRefPrefix + s.define(named)}
		}
		key := named.String()
		if s.inline[key] {
			return &schema{} // a cycle through types that are not structs
		}
		s.inline[key] = true
		defer delete(s.inline, key)
	}
	switch u := t.Underlying().(type) {
	case *types.Basic:
		return basicSchema(u)
	case *types.Pointer:
		return nullable(s.of(u.Elem()))
	case *types.Slice:
		if b, ok := u.Elem().Underlying().(*types.Basic); ok && b.Kind() == types.Byte {
			return nullable(&schema{Type: "string", ContentEncoding: "base64"})
		}
		return nullable(&schema{Type: "array", Items: s.of(u.Elem())})
	case *types.Array:
		return &schema{Type: "array", Items: s.of(u.Elem())}
	case *types.Map:
		return nullable(&schema{Type: "object", AdditionalProperties: s.of(u.Elem()), PropertyNames: keySchema(u.Key())})
	case *types.Struct:
		return s.object(u)
	}
	return &schema{} // interfaces: any JSON value
}

// nullable is s or null: what encoding/json makes of a nil pointer,
// slice or map.
func nullable(s *schema) *schema {
	if s.Type == "" && s.Ref == "" && s.AnyOf == nil && s.OneOf == nil {
		return s // any value, null included
	}
	if describe.Nullable(s) != nil {
		return s
	}
	return &schema{AnyOf: []*schema{s, {Type: "null"}}}
}

// keySchema is the schema of the keys of a map of key type k, as
// encoding/json writes them: nil for strings (and text), a pattern for
// integers.
func keySchema(k types.Type) *schema {
	b, ok := k.Underlying().(*types.Basic)
	if !ok || b.Info()&types.IsString != 0 || types.NewMethodSet(types.NewPointer(k)).Lookup(nil, "MarshalText") != nil {
		return nil
	}
	switch info := b.Info(); {
	case info&types.IsUnsigned != 0:
		return &schema{Type: "string", Pattern: "^[0-9]+$", Format: numberFormats[b.Kind()]}
	case info&types.IsInteger != 0:
		return &schema{Type: "string", Pattern: "^-?[0-9]+$", Format: numberFormats[b.Kind()]}
	}
	return nil
}

// numberFormats are the ranges of Go's integer and float kinds, as formats:
// a change of range is a change of the values that decode.
var numberFormats = map[types.BasicKind]string{
	types.Int: "int64", types.Int8: "int8", types.Int16: "int16", types.Int32: "int32", types.Int64: "int64",
	types.Uint: "uint64", types.Uint8: "uint8", types.Uint16: "uint16", types.Uint32: "uint32", types.Uint64: "uint64", types.Uintptr: "uint64",
	types.Float32: "float32", types.Float64: "float64",
}

func basicSchema(b *types.Basic) *schema {
	switch info := b.Info(); {
	case info&types.IsInteger != 0:
		return &schema{Type: "integer", Format: numberFormats[b.Kind()]}
	case info&types.IsFloat != 0:
		return &schema{Type: "number", Format: numberFormats[b.Kind()]}
	case info&types.IsString != 0:
		return &schema{Type: "string"}
	case info&types.IsBoolean != 0:
		return &schema{Type: "boolean"}
	}
	return &schema{}
}

// define adds the schema of the named struct type t to defs, once, and
// returns its name there.
func (s *schemas) define(t *types.Named) string {
	key := t.String()
	if name, ok := s.names[key]; ok {
		return name
	}
	name := s.nameOf(t)
	s.names[key] = name
	s.defs[name] = &schema{} // taken, so that a recursive type refers to it
	def := s.object(t.Underlying().(*types.Struct))
	def.Description = "Go type " + key
	s.defs[name] = def
	return name
}

// nameOf chooses the name of t in defs: its own for a type of the
// interfaces' package, package.Name for another's, with the type
// arguments of an instance after underscores; a number is added in the
// unlikely case that two packages of one name define types of one name.
func (s *schemas) nameOf(t *types.Named) string {
	obj := t.Obj()
	name := obj.Name()
	if obj.Pkg() != nil && obj.Pkg() != s.pkg {
		name = obj.Pkg().Name() + "." + name
	}
	for a := range t.TypeArgs().Types() {
		name += "_" + schemaNameChars.Replace(types.TypeString(a, func(p *types.Package) string { return p.Name() }))
	}
	base := name
	for i := 2; s.defs[name] != nil; i++ {
		name = base + strconv.Itoa(i)
	}
	return name
}

// schemaNameChars keeps a type's spelling to the characters AsyncAPI
// allows in a component's name.
var schemaNameChars = strings.NewReplacer("[", "_", "]", "", "*", "Ptr", " ", "", ",", "_", "{", "", "}", "", "(", "", ")", "")

// object is the schema of a struct: its fields as encoding/json encodes
// them, those of embedded structs flattened.
func (s *schemas) object(st *types.Struct) *schema {
	o := &schema{Type: "object", Properties: make(map[string]*schema)}
	for _, f := range jsonFields(st) {
		fs := s.of(f.typ)
		if f.quoted { // ",string": a number or a boolean goes in a string
			// The string keeps the number's range as its format.
			if core := describe.Nullable(fs); core != nil && (core.Type == "integer" || core.Type == "number" || core.Type == "boolean") {
				fs = nullable(&schema{Type: "string", Format: core.Format})
			} else if fs.Type == "integer" || fs.Type == "number" || fs.Type == "boolean" {
				fs = &schema{Type: "string", Format: fs.Format}
			}
		}
		o.Properties[f.name] = fs
		if !f.omit {
			o.Required = append(o.Required, f.name)
		}
	}
	slices.Sort(o.Required)
	return o
}

// jsonField is one field of a struct's JSON object.
type jsonField struct {
	name   string
	typ    types.Type
	omit   bool // omitempty or omitzero: may be left out
	quoted bool // ",string"
	tagged bool // named by its tag
	depth  int  // how deep in embedded structs
}

// jsonFields returns the fields of st's JSON object as encoding/json
// chooses them: exported fields, or those of embedded structs without a
// name in their tag, and of several fields of one name the shallowest,
// the tagged one of those at one depth, or none.
func jsonFields(st *types.Struct) []jsonField {
	var all []jsonField
	var walk func(st *types.Struct, depth int, seen map[*types.Struct]bool)
	walk = func(st *types.Struct, depth int, seen map[*types.Struct]bool) {
		if seen[st] {
			return
		}
		seen[st] = true
		defer delete(seen, st)
		for i := range st.NumFields() {
			f := st.Field(i)
			tag := reflect.StructTag(st.Tag(i)).Get("json")
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			if f.Embedded() && name == "" {
				t := f.Type()
				if p, ok := t.Underlying().(*types.Pointer); ok {
					if !f.Exported() {
						continue // encoding/json cannot set a pointer to an unexported type
					}
					t = p.Elem()
				}
				if inner, ok := t.Underlying().(*types.Struct); ok {
					walk(inner, depth+1, seen)
					continue
				}
			}
			// encoding/json keeps an unexported embedded struct that its tag
			// names, as a field of that name.
			_, isStruct := f.Type().Underlying().(*types.Struct)
			if !f.Exported() && !(f.Embedded() && name != "" && isStruct) {
				continue
			}
			jf := jsonField{name: name, typ: f.Type(), tagged: name != "", depth: depth}
			if name == "" {
				jf.name = f.Name()
			}
			for o := range strings.SplitSeq(opts, ",") {
				jf.omit = jf.omit || o == "omitempty" || o == "omitzero"
				jf.quoted = jf.quoted || o == "string"
			}
			all = append(all, jf)
		}
	}
	walk(st, 0, make(map[*types.Struct]bool))

	var out []jsonField
	for _, f := range all {
		if slices.ContainsFunc(out, func(o jsonField) bool { return o.name == f.name }) {
			continue
		}
		var rivals []jsonField // the fields of its name at the least depth
		for _, g := range all {
			switch {
			case g.name != f.name:
			case len(rivals) == 0 || g.depth < rivals[0].depth:
				rivals = []jsonField{g}
			case g.depth == rivals[0].depth:
				rivals = append(rivals, g)
			}
		}
		if tagged := slices.DeleteFunc(slices.Clone(rivals), func(g jsonField) bool { return !g.tagged }); len(tagged) > 0 {
			rivals = tagged
		}
		if len(rivals) == 1 {
			out = append(out, rivals[0])
		} else {
			out = append(out, jsonField{name: f.name, typ: nil}) // ambiguous: encoding/json drops it
		}
	}
	return slices.DeleteFunc(out, func(f jsonField) bool { return f.typ == nil })
}

// reachable returns the schemas of defs that the methods of svc refer to,
// directly or through other types; nil for none.
func reachable(svc *service, defs map[string]*schema) map[string]*schema {
	var types map[string]*schema
	var visit func(name string)
	visit = func(name string) {
		if types[name] != nil || defs[name] == nil {
			return
		}
		if types == nil {
			types = make(map[string]*schema)
		}
		types[name] = defs[name]
		defs[name].Refs(visit)
	}
	for _, m := range svc.methods {
		for _, p := range slices.Concat(m.params, m.results, []*param{m.item}) {
			if p != nil {
				p.schema.Refs(visit)
			}
		}
	}
	return types
}
