package describe

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fd is a field whose schema is its JSON shape.
func fd(name, goType, json string) Field {
	return Field{Name: name, GoType: goType, JSON: json, Schema: &Schema{Type: json}}
}

// bare is s without schemas, as a server generated before descriptions
// carried them describes itself.
func bare(s []Service) []Service {
	for i := range s {
		for j := range s[i].Methods {
			for _, fields := range [][]Field{s[i].Methods[j].Params, s[i].Methods[j].Results} {
				for k := range fields {
					fields[k].Schema = nil
				}
			}
		}
	}
	return s
}

// calc is a description to change, one rule at a time.
func calc() []Service {
	return []Service{{Name: "Calculator", Version: "1.1", Errors: []string{"calc.ErrDivideByZero"}, Methods: []Method{
		{Name: "add", Mode: "call", Since: "1.0", Params: []Field{fd("v1", "int", "integer"), fd("v2", "int", "integer")}, Results: []Field{fd("r1", "int", "integer")}},
		{Name: "div", Mode: "call", Since: "1.1", Params: []Field{fd("a", "int", "integer"), fd("b", "int", "integer")}, Results: []Field{fd("r1", "int", "integer")}},
		{Name: "store", Mode: "cast", Since: "1.0", Params: []Field{fd("v", "int", "integer")}, Results: []Field{}},
		{Name: "memory", Mode: "call", Gather: true, Since: "1.0", Params: []Field{}, Results: []Field{fd("r1", "int", "integer")}},
	}}}
}

// TestRules holds each rule of docs/CONTRACTS.md: a change of one
// description, the rule it must be reported under, its kind, and whether
// it fails the check (a breaking change no major version covers).
func TestRules(t *testing.T) {
	method := func(s []Service, name string) *Method {
		for i := range s[0].Methods {
			if s[0].Methods[i].Name == name {
				return &s[0].Methods[i]
			}
		}
		panic(name)
	}
	cases := []struct {
		rule   string
		kind   Kind
		fails  bool
		change func(s []Service) []Service
	}{
		{"service-removed", Breaking, true, func(s []Service) []Service { return nil }},
		{"service-added", Safe, false, func(s []Service) []Service { return append(s, Service{Name: "Other", Version: "1.0"}) }},
		{"method-removed", Breaking, true, func(s []Service) []Service {
			s[0].Methods = slices.DeleteFunc(s[0].Methods, func(m Method) bool { return m.Name == "div" })
			return s
		}},
		{"method-added", Safe, false, func(s []Service) []Service {
			s[0].Version = "1.2"
			s[0].Methods = append(s[0].Methods, Method{Name: "mul", Mode: "call", Since: "1.2", Params: []Field{}, Results: []Field{}})
			return s
		}},
		{"method-added-without-since", Breaking, true, func(s []Service) []Service {
			s[0].Methods = append(s[0].Methods, Method{Name: "mul", Mode: "call", Since: "1.0", Params: []Field{}, Results: []Field{}})
			return s
		}},
		{"mode-changed", Breaking, true, func(s []Service) []Service { method(s, "store").Mode = "call"; return s }},
		{"gather-removed", Safe, false, func(s []Service) []Service { method(s, "memory").Gather = false; return s }},
		{"gather-added", Safe, false, func(s []Service) []Service { method(s, "add").Gather = true; return s }},
		{"since-changed", Breaking, true, func(s []Service) []Service { method(s, "div").Since = "1.0"; return s }},
		{"param-removed", Breaking, true, func(s []Service) []Service { method(s, "add").Params[1].Name = "w2"; return s }},
		{"param-added", Breaking, true, func(s []Service) []Service {
			m := method(s, "store")
			m.Params = append(m.Params, fd("times", "int", "integer"))
			return s
		}},
		{"param-shape-changed", Breaking, true, func(s []Service) []Service {
			method(s, "add").Params[0] = fd("v1", "float64", "number")
			return s
		}},
		{"param-type-changed", Safe, false, func(s []Service) []Service {
			method(s, "add").Params[0] = fd("v1", "int64", "integer")
			return s
		}},
		{"result-shape-changed", Breaking, true, func(s []Service) []Service {
			method(s, "div").Results[0] = fd("r1", "string", "string")
			return s
		}},
		{"result-type-changed", Safe, false, func(s []Service) []Service {
			method(s, "div").Results[0] = fd("r1", "int32", "integer")
			return s
		}},
		{"result-removed", Breaking, true, func(s []Service) []Service { method(s, "memory").Results = []Field{}; return s }},
		{"result-added", Breaking, true, func(s []Service) []Service {
			m := method(s, "div")
			m.Results = append(m.Results, fd("rest", "int", "integer"))
			return s
		}},
		{"result-added", Safe, false, func(s []Service) []Service {
			method(s, "store").Results = []Field{fd("r1", "int", "integer")}
			return s
		}},
		{"error-removed", Breaking, true, func(s []Service) []Service { s[0].Errors = nil; return s }},
		{"error-added", Safe, false, func(s []Service) []Service { s[0].Errors = append(s[0].Errors, "calc.ErrOverflow"); return s }},
		{"namespace-changed", Breaking, true, func(s []Service) []Service { s[0].Namespace = "admin"; return s }},
		{"version-lowered", Breaking, true, func(s []Service) []Service { s[0].Version = "1.0"; return s }},
		{"major-version", Safe, false, func(s []Service) []Service {
			s[0].Version = "2.0"
			s[0].Methods = slices.DeleteFunc(s[0].Methods, func(m Method) bool { return m.Name == "div" })
			return s
		}},
	}
	for _, tc := range cases {
		t.Run(tc.rule+"/"+string(tc.kind), func(t *testing.T) {
			changes := Compare(calc(), tc.change(calc()))
			found := false
			for _, c := range changes {
				if c.Rule == tc.rule && c.Kind == tc.kind {
					found = true
				}
			}
			if !found || Breaks(changes) != tc.fails {
				t.Fatalf("want %s (%s), failing %v; got %v, failing %v", tc.rule, tc.kind, tc.fails, changes, Breaks(changes))
			}
		})
	}
	if changes := Compare(calc(), calc()); len(changes) != 0 {
		t.Fatalf("no change reported %v", changes)
	}
	// A new major version covers what it breaks: reported, not failing.
	changes := Compare(calc(), func(s []Service) []Service {
		s[0].Version = "2.0"
		s[0].Methods = s[0].Methods[:1]
		return s
	}(calc()))
	if Breaks(changes) || !changes[len(changes)-1].Covered {
		t.Fatalf("a major version's removals: %v", changes)
	}
}

// TestShapesUnknown: a description without schemas (a server generated
// before descriptions carried them), or a reference to a type its
// description lacks, is compared by its JSON shape alone, and the check
// says what it did not compare, without failing.
func TestShapesUnknown(t *testing.T) {
	rules := func(changes []Change) (r []string) {
		for _, c := range changes {
			r = append(r, string(c.Kind)+" "+c.Rule)
		}
		return r
	}
	withSchema := calc()
	withSchema[0].Methods[0].Params[0].Schema = &Schema{Type: "object", Properties: map[string]*Schema{"x": {Type: "integer"}}}
	oldSide := []string{"not compared schemas-missing"}
	if changes := Compare(bare(calc()), withSchema); !slices.Equal(rules(changes), oldSide) || Breaks(changes) {
		t.Errorf("a schema where there was none: %v", changes)
	}
	if changes := Compare(withSchema, bare(calc())); !slices.Equal(rules(changes), oldSide) || !strings.Contains(changes[0].What, "new description") {
		t.Errorf("no schema where there was one: %v", changes)
	}
	dangling := calc()
	dangling[0].Methods[0].Params[0].Schema = &Schema{Ref: TypeRef + "Point"}
	if changes := Compare(withSchema, dangling); !slices.Equal(rules(changes), []string{"not compared param-not-compared"}) || Breaks(changes) {
		t.Errorf("a reference to a type the description lacks: %v", changes)
	}
	// Another Go type of an object, whose fields one side does not say.
	other := bare(calc())
	other[0].Methods[0].Params[0] = Field{Name: "v1", GoType: "Query", JSON: "object"}
	was := calc()
	was[0].Methods[0].Params[0] = Field{Name: "v1", GoType: "Filter", JSON: "object", Schema: &Schema{Ref: TypeRef + "Filter"}}
	was[0].Types = map[string]*Schema{"Filter": {Type: "object"}}
	if changes := Compare(was, other); !slices.Equal(rules(changes), []string{"not compared schemas-missing", "not compared param-not-compared"}) || Breaks(changes) {
		t.Errorf("an object of another type, without a schema: %v", changes)
	}
	// With both, a field renamed inside is seen.
	renamed := calc()
	renamed[0].Methods[0].Params[0].Schema = &Schema{Type: "object", Properties: map[string]*Schema{"y": {Type: "integer"}}}
	changes := Compare(withSchema, renamed)
	if !slices.Equal(rules(changes), []string{"wire-breaking param-field-removed", "wire-breaking param-field-added"}) || !Breaks(changes) {
		t.Errorf("a field renamed: %v", changes)
	}
}

// TestShapes: what inside a value changes the wire, and what does not.
func TestShapes(t *testing.T) {
	integer := func(format string) *Schema { return &Schema{Type: "integer", Format: format} }
	null := func(s *Schema) *Schema { return &Schema{AnyOf: []*Schema{s, {Type: "null"}}} }
	obj := func(fields ...any) *Schema {
		o := &Schema{Type: "object", Properties: map[string]*Schema{}}
		for i := 0; i < len(fields); i += 2 {
			o.Properties[fields[i].(string)] = fields[i+1].(*Schema)
		}
		return o
	}
	mapOf := func(key, value *Schema) *Schema {
		return &Schema{Type: "object", PropertyNames: key, AdditionalProperties: value}
	}
	signed := &Schema{Type: "string", Pattern: "^-?[0-9]+$", Format: "int64"}
	for _, tc := range []struct {
		name     string
		old, new *Schema
		types    map[string]*Schema // the new side's
		want     []string           // rules, in order
	}{
		{"same range", integer("int64"), integer("int64"), nil, nil},
		{"narrower integers", integer("int64"), integer("int32"), nil, []string{"param-shape-changed"}},
		{"signed to unsigned", integer("int64"), integer("uint64"), nil, []string{"param-shape-changed"}},
		{"a range unsaid", integer(""), integer("int32"), nil, nil},
		{"nullable or not", integer("int64"), null(integer("int64")), nil, nil},
		{"string to integer keys", mapOf(nil, integer("int64")), mapOf(signed, integer("int64")), nil, []string{"param-shape-changed"}},
		{"a map's values", mapOf(nil, integer("int64")), mapOf(nil, &Schema{Type: "string"}), nil, []string{"param-shape-changed"}},
		{"a struct to a map", obj("a", integer("int64")), mapOf(nil, integer("int64")), nil, []string{"param-shape-changed"}},
		{"a named type against values written out, in two places",
			obj("a", obj("x", integer("int64")), "b", obj("y", &Schema{Type: "string"})),
			obj("a", &Schema{Ref: TypeRef + "M"}, "b", &Schema{Ref: TypeRef + "M"}), nil,
			[]string{"param-field-removed", "param-field-added"}},
		{"a field renamed in case", obj("Qty", integer("int64")), obj("qty", integer("int64")), nil, []string{"field-case-changed"}},
		{"a type used twice, changed once", obj("a", &Schema{Ref: TypeRef + "M"}, "b", &Schema{Ref: TypeRef + "M"}),
			obj("a", &Schema{Ref: TypeRef + "M"}, "b", &Schema{Ref: TypeRef + "M"}),
			map[string]*Schema{"M": obj("x", integer("int64"), "y", integer("int64"))}, []string{"param-field-added"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old, new := calc(), calc()
			old[0].Methods[0].Params[0].Schema = tc.old
			new[0].Methods[0].Params[0].Schema = tc.new
			old[0].Types = map[string]*Schema{"M": obj("x", integer("int64"))}
			new[0].Types = tc.types
			if new[0].Types == nil {
				new[0].Types = old[0].Types
			}
			var rules []string
			for _, c := range Compare(old, new) {
				rules = append(rules, c.Rule)
			}
			if !slices.Equal(rules, tc.want) {
				t.Errorf("%v, want %v", Compare(old, new), tc.want)
			}
		})
	}
}

// A chain of types, each with four fields of the next, is compared in
// time linear in its types, not in its paths.
func TestShapesShared(t *testing.T) {
	types := map[string]*Schema{"T20": {Type: "object", Properties: map[string]*Schema{"x": {Type: "integer"}}}}
	for i := 19; i >= 0; i-- {
		next := &Schema{Ref: TypeRef + "T" + strconv.Itoa(i+1)}
		types["T"+strconv.Itoa(i)] = &Schema{Type: "object", Properties: map[string]*Schema{"a": next, "b": next, "c": next, "d": next}}
	}
	newTypes := maps.Clone(types)
	newTypes["T20"] = &Schema{Type: "object", Properties: map[string]*Schema{"x": {Type: "integer"}, "y": {Type: "integer"}}}
	old, new := calc(), calc()
	old[0].Methods[0].Params[0].Schema = &Schema{Ref: TypeRef + "T0"}
	new[0].Methods[0].Params[0].Schema = &Schema{Ref: TypeRef + "T0"}
	old[0].Types, new[0].Types = types, newTypes
	done := make(chan []Change)
	go func() { done <- Compare(old, new) }()
	select {
	case changes := <-done:
		if len(changes) != 1 || changes[0].Rule != "param-field-added" {
			t.Fatalf("%v", changes)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the comparison of 4^20 paths through 21 types did not end")
	}
}
