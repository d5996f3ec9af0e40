package describe

import (
	"slices"
	"testing"
)

// calc is a description to change, one rule at a time.
func calc() []Service {
	return []Service{{Name: "Calculator", Version: "1.1", Errors: []string{"calc.ErrDivideByZero"}, Methods: []Method{
		{Name: "add", Mode: "call", Since: "1.0", Params: []Field{{"v1", "int", "integer"}, {"v2", "int", "integer"}}, Results: []Field{{"r1", "int", "integer"}}},
		{Name: "div", Mode: "call", Since: "1.1", Params: []Field{{"a", "int", "integer"}, {"b", "int", "integer"}}, Results: []Field{{"r1", "int", "integer"}}},
		{Name: "store", Mode: "cast", Since: "1.0", Params: []Field{{"v", "int", "integer"}}, Results: []Field{}},
		{Name: "memory", Mode: "call", Gather: true, Since: "1.0", Params: []Field{}, Results: []Field{{"r1", "int", "integer"}}},
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
		{"gather-removed", Breaking, true, func(s []Service) []Service { method(s, "memory").Gather = false; return s }},
		{"gather-added", Safe, false, func(s []Service) []Service { method(s, "add").Gather = true; return s }},
		{"since-changed", Breaking, true, func(s []Service) []Service { method(s, "div").Since = "1.0"; return s }},
		{"param-removed", Breaking, true, func(s []Service) []Service { method(s, "add").Params[1].Name = "w2"; return s }},
		{"param-added", Breaking, true, func(s []Service) []Service {
			m := method(s, "store")
			m.Params = append(m.Params, Field{"times", "int", "integer"})
			return s
		}},
		{"param-shape-changed", Breaking, true, func(s []Service) []Service {
			method(s, "add").Params[0] = Field{"v1", "float64", "number"}
			return s
		}},
		{"param-type-changed", Safe, false, func(s []Service) []Service {
			method(s, "add").Params[0] = Field{"v1", "int64", "integer"}
			return s
		}},
		{"result-shape-changed", Breaking, true, func(s []Service) []Service {
			method(s, "div").Results[0] = Field{"r1", "string", "string"}
			return s
		}},
		{"result-type-changed", Safe, false, func(s []Service) []Service {
			method(s, "div").Results[0] = Field{"r1", "int32", "integer"}
			return s
		}},
		{"result-removed", Breaking, true, func(s []Service) []Service { method(s, "memory").Results = []Field{}; return s }},
		{"result-added", Breaking, true, func(s []Service) []Service {
			m := method(s, "div")
			m.Results = append(m.Results, Field{"rest", "int", "integer"})
			return s
		}},
		{"result-added", Safe, false, func(s []Service) []Service {
			method(s, "store").Results = []Field{{"r1", "int", "integer"}}
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
