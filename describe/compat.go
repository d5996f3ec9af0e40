package describe

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Compatibility. Compare lists what changed on the wire between two
// descriptions of a set of services, each with its kind: Breaking, when a
// caller or a server built from the old description fails against one
// built from the new (or the other way round, in a rolling upgrade where
// both run), or Safe. A breaking change of a service whose major version
// went up is Covered: callers of the old major version were told, by the
// version, to expect it (docs/CONTRACTS.md has the rules, each with a
// test).

// Kind is what a change does to callers and servers of the other side.
type Kind string

const (
	// Safe changes keep every old caller and server working.
	Safe Kind = "safe"
	// Breaking changes fail an old caller, or an old server.
	Breaking Kind = "wire-breaking"
	// Unchecked changes could not be compared: one description does not
	// say enough (a server generated before descriptions carried
	// schemas). They do not fail the check; a person should look.
	Unchecked Kind = "not compared"
)

// Change is one difference between two descriptions.
type Change struct {
	Kind    Kind
	Rule    string // the rule's name, as docs/CONTRACTS.md lists it
	Service string
	Method  string // "" for a change of the service itself
	What    string
	// Covered says a breaking change comes with a new major version of
	// its service.
	Covered bool
}

func (c Change) String() string {
	where := c.Service
	if c.Method != "" {
		where += "." + c.Method
	}
	kind := string(c.Kind)
	if c.Covered {
		kind += " (new major version)"
	}
	return fmt.Sprintf("%s: %s: %s [%s]", kind, where, c.What, c.Rule)
}

// Compare returns the changes from old to new, services and methods in
// the order of their names.
func Compare(old, new []Service) []Change {
	var changes []Change
	news := make(map[string]*Service)
	for i := range new {
		news[new[i].Name] = &new[i]
	}
	olds := make(map[string]bool)
	for i := range old {
		o := &old[i]
		olds[o.Name] = true
		n, ok := news[o.Name]
		if !ok {
			changes = append(changes, Change{Kind: Breaking, Rule: "service-removed", Service: o.Name, What: "the service is gone: its callers get unimplemented"})
			continue
		}
		changes = append(changes, compareService(o, n)...)
	}
	for i := range new {
		if !olds[new[i].Name] {
			changes = append(changes, Change{Kind: Safe, Rule: "service-added", Service: new[i].Name, What: "a new service"})
		}
	}
	return changes
}

// Breaks reports whether changes has a breaking change that no new major
// version covers.
func Breaks(changes []Change) bool {
	for _, c := range changes {
		if c.Kind == Breaking && !c.Covered {
			return true
		}
	}
	return false
}

func compareService(o, n *Service) []Change {
	var changes []Change
	oMajor, oMinor := version(o.Version)
	nMajor, nMinor := version(n.Version)
	major := nMajor > oMajor
	add := func(kind Kind, rule, method, what string) {
		changes = append(changes, Change{Kind: kind, Rule: rule, Service: o.Name, Method: method, What: what, Covered: kind == Breaking && major})
	}
	switch {
	case nMajor < oMajor || nMajor == oMajor && nMinor < oMinor:
		add(Breaking, "version-lowered", "", fmt.Sprintf("version %s, lower than %s", n.Version, o.Version))
	case major:
		add(Safe, "major-version", "", fmt.Sprintf("version %s to %s: callers of %d.x fail with unsupported_version, and breaking changes are allowed", o.Version, n.Version, oMajor))
	}
	if o.Namespace != n.Namespace {
		add(Breaking, "namespace-changed", "", fmt.Sprintf("namespace %q to %q: oslo.messaging peers dispatch on it", o.Namespace, n.Namespace))
	}
	for i, svc := range []*Service{o, n} {
		if lacksSchemas(svc) {
			add(Unchecked, "schemas-missing", "", fmt.Sprintf("the %s description carries no JSON Schemas (a server generated before they were carried): the fields of objects, the ranges of numbers and the keys of maps are not compared", [2]string{"old", "new"}[i]))
		}
	}
	nm := make(map[string]*Method)
	for i := range n.Methods {
		nm[n.Methods[i].Name] = &n.Methods[i]
	}
	om := make(map[string]bool)
	for i := range o.Methods {
		m := &o.Methods[i]
		om[m.Name] = true
		if x, ok := nm[m.Name]; ok {
			for _, c := range compareMethod(m, x, shapes{old: o.Types, new: n.Types, seen: make(map[[2]string]bool)}) {
				if c.Rule == "since-changed" && major && x.Since == fmt.Sprintf("%d.0", nMajor) {
					continue // the methods of the old major version are the new one's first
				}
				add(c.Kind, c.Rule, m.Name, c.What)
			}
			continue
		}
		add(Breaking, "method-removed", m.Name, "the method is gone (or renamed): old callers get unimplemented")
	}
	for i := range n.Methods {
		m := &n.Methods[i]
		if om[m.Name] {
			continue
		}
		sMajor, sMinor := version(m.Since)
		if !major && (sMajor < nMajor || sMajor == oMajor && sMinor <= oMinor) {
			add(Breaking, "method-added-without-since", m.Name, fmt.Sprintf("a new method of version %s, which servers of %s lack: give it //amqprpc:since and raise the version", m.Since, o.Version))
			continue
		}
		add(Safe, "method-added", m.Name, fmt.Sprintf("a new method, since %s: a client capped below it does not call it", m.Since))
	}
	oe := make(map[string]bool)
	for _, e := range o.Errors {
		oe[e] = true
	}
	ne := make(map[string]bool)
	for _, e := range n.Errors {
		ne[e] = true
		if !oe[e] {
			add(Safe, "error-added", "", fmt.Sprintf("declares %s", e))
		}
	}
	for _, e := range o.Errors {
		if !ne[e] {
			add(Breaking, "error-removed", "", fmt.Sprintf("no longer declares %s: old callers that match it get an *Error instead", e))
		}
	}
	return changes
}

// lacksSchemas reports whether a field of svc's methods has no schema.
func lacksSchemas(svc *Service) bool {
	for _, m := range svc.Methods {
		for _, f := range slices.Concat(m.Params, m.Results) {
			if f.Schema == nil {
				return true
			}
		}
	}
	return false
}

// compareMethod returns the changes of a method kept under its name.
func compareMethod(o, n *Method, sh shapes) []Change {
	var changes []Change
	add := func(kind Kind, rule, what string) {
		changes = append(changes, Change{Kind: kind, Rule: rule, What: what})
	}
	if o.Mode != n.Mode {
		add(Breaking, "mode-changed", fmt.Sprintf("mode %s to %s: the two sides no longer agree on a reply", o.Mode, n.Mode))
	}
	if o.Gather && !n.Gather {
		add(Safe, "gather-removed", "no longer gathered by new clients: old callers' gathers still reach every server, which answer them")
	}
	if !o.Gather && n.Gather {
		add(Safe, "gather-added", "may also be gathered")
	}
	if o.Since != n.Since {
		add(Breaking, "since-changed", fmt.Sprintf("since %s to %s: clients capped between them disagree with servers", o.Since, n.Since))
	}
	changes = append(changes, sh.fields("param", o.Params, n.Params)...)
	changes = append(changes, sh.fields("result", o.Results, n.Results)...)
	return changes
}

// compareFields compares a method's parameters, or its results: a name
// that goes, comes, or changes its JSON shape breaks one side.
func (sh shapes) fields(what string, o, n []Field) []Change {
	var changes []Change
	nf := make(map[string]Field)
	for _, f := range n {
		nf[f.Name] = f
	}
	of := make(map[string]bool)
	for _, f := range o {
		of[f.Name] = true
		x, ok := nf[f.Name]
		switch {
		case !ok && what == "param":
			changes = append(changes, Change{Kind: Breaking, Rule: "param-removed", What: fmt.Sprintf("parameter %s is gone (or renamed): old callers send it, and new servers refuse an argument they do not know", f.Name)})
		case !ok:
			changes = append(changes, Change{Kind: Breaking, Rule: "result-removed", What: fmt.Sprintf("result %s is gone (or renamed): old callers read nothing for it", f.Name)})
		case f.JSON != x.JSON:
			changes = append(changes, Change{Kind: Breaking, Rule: what + "-shape-changed", What: fmt.Sprintf("%s %s travels as %s, not %s (%s to %s)", label[what], f.Name, x.JSON, f.JSON, f.GoType, x.GoType)})
		case (f.Schema == nil || x.Schema == nil) && f.GoType != x.GoType && (f.JSON == "object" || f.JSON == "array" || f.JSON == "any"):
			side := map[bool]string{true: "old", false: "new"}[f.Schema == nil]
			changes = append(changes, Change{Kind: Unchecked, Rule: what + "-not-compared", What: fmt.Sprintf("%s %s is a %s, not a %s, whose fields the %s description does not say (a server generated before descriptions carried schemas)", label[what], f.Name, x.GoType, f.GoType, side)})
		default:
			inner := sh.compare(what, label[what]+" "+f.Name, f.Schema, x.Schema)
			if f.GoType != x.GoType && len(inner) == 0 {
				changes = append(changes, Change{Kind: Safe, Rule: what + "-type-changed", What: fmt.Sprintf("%s %s's Go type is %s, not %s; it travels as %s still", label[what], f.Name, x.GoType, f.GoType, x.JSON)})
			}
			changes = append(changes, inner...)
		}
	}
	for _, f := range n {
		if of[f.Name] {
			continue
		}
		switch {
		case what == "param":
			changes = append(changes, Change{Kind: Breaking, Rule: "param-added", What: fmt.Sprintf("parameter %s is new: new callers send it, and old servers refuse an argument they do not know", f.Name)})
		case len(o) == 0:
			changes = append(changes, Change{Kind: Safe, Rule: "result-added", What: fmt.Sprintf("result %s is new: old callers wanted none, and read none", f.Name)})
		default:
			changes = append(changes, Change{Kind: Breaking, Rule: "result-added", What: fmt.Sprintf("result %s is new: the reply's shape changes for old callers (one result travels as itself, several as an object)", f.Name)})
		}
	}
	return changes
}

// label names param and result in what a change says.
var label = map[string]string{"param": "parameter", "result": "result"}

// shapes compares the schemas of a parameter, a result or a stream item
// inside its JSON: the fields of objects, the items of arrays, the keys and
// values of maps, through the types of the old and the new service.
type shapes struct {
	old, new map[string]*Schema
	// seen holds the pairs of named types compared, so that each pair
	// is compared once, where it is first reached: a recursive type
	// ends, and a type used in many places is reported once.
	seen map[[2]string]bool
}

// compare returns the changes from the schema o to n of what (param or
// result) at path. A schema that is nil (a server that did not say) is
// not compared.
func (sh shapes) compare(what, path string, o, n *Schema) []Change {
	if o == nil || n == nil {
		return nil
	}
	// Null or not changes nothing: encoding/json decodes null into any
	// value as its zero.
	if core := Nullable(o); core != nil {
		o = core
	}
	if core := Nullable(n); core != nil {
		n = core
	}
	if o.Ref != "" || n.Ref != "" {
		// A pair of named types is compared once; a named type against
		// a value written out is compared wherever it is (the value is
		// finite, so a recursion through it ends).
		if o.Ref != "" && n.Ref != "" {
			pair := [2]string{o.Ref, n.Ref}
			if sh.seen[pair] {
				return nil
			}
			sh.seen[pair] = true
		}
		ro, rn := resolve(o, sh.old), resolve(n, sh.new)
		if ro == nil || rn == nil {
			missing := map[bool]string{true: o.Ref + " is not in the old", false: n.Ref + " is not in the new"}[ro == nil]
			return []Change{{Kind: Unchecked, Rule: what + "-not-compared", What: fmt.Sprintf("%s: its type %s description's types", path, missing)}}
		}
		o, n = ro, rn
	}
	if lo, ln := shapeOf(o), shapeOf(n); lo != ln {
		return []Change{{Kind: Breaking, Rule: what + "-shape-changed", What: fmt.Sprintf("%s travels as %s, not %s", path, ln, lo)}}
	}
	if o.Format != n.Format && o.Format != "" && n.Format != "" && (o.Type == "integer" || o.Type == "number") {
		return []Change{{Kind: Breaking, Rule: what + "-shape-changed", What: fmt.Sprintf("%s's range is %s, not %s: a value of one may not fit the other", path, n.Format, o.Format)}}
	}
	switch {
	case o.Items != nil && n.Items != nil:
		return sh.compare(what, path+"[]", o.Items, n.Items)
	case o.AdditionalProperties != nil && n.AdditionalProperties != nil:
		if ko, kn := keyShape(o.PropertyNames), keyShape(n.PropertyNames); ko != kn && ko != "" && kn != "" {
			return []Change{{Kind: Breaking, Rule: what + "-shape-changed", What: fmt.Sprintf("%s's keys are %s, not %s", path, kn, ko)}}
		}
		return sh.compare(what, path+"{}", o.AdditionalProperties, n.AdditionalProperties)
	}
	var changes []Change
	matched := make(map[string]bool) // the new fields an old one matched
	for _, name := range sortedKeys(o.Properties) {
		at := path + "." + name
		x, ok := n.Properties[name]
		if !ok {
			// encoding/json matches a field's name regardless of case
			// when there is no exact match.
			if folded := foldedKey(n.Properties, o.Properties, name); folded != "" {
				x, ok = n.Properties[folded], true
				matched[folded] = true
				changes = append(changes, Change{Kind: Safe, Rule: "field-case-changed", What: fmt.Sprintf("%s is now spelt %s: Go peers match names regardless of case, peers of other languages may not", at, folded)})
			}
		}
		matched[name] = ok
		switch {
		case !ok && what == "param":
			changes = append(changes, Change{Kind: Breaking, Rule: "param-field-removed", What: fmt.Sprintf("%s is gone (or renamed): old callers send it, and new servers refuse a field they do not know", at)})
		case !ok:
			changes = append(changes, Change{Kind: Breaking, Rule: "result-field-removed", What: fmt.Sprintf("%s is gone (or renamed): old callers read its zero value", at)})
		default:
			changes = append(changes, sh.compare(what, at, o.Properties[name], x)...)
		}
	}
	for _, name := range sortedKeys(n.Properties) {
		if _, ok := o.Properties[name]; ok || matched[name] {
			continue
		}
		at := path + "." + name
		if what == "param" {
			changes = append(changes, Change{Kind: Breaking, Rule: "param-field-added", What: fmt.Sprintf("%s is a new field: old servers refuse it from new callers that set it", at)})
		} else {
			changes = append(changes, Change{Kind: Safe, Rule: "result-field-added", What: fmt.Sprintf("%s is a new field: old callers ignore it", at)})
		}
	}
	return changes
}

// foldedKey returns the one key of news equal to name but for case, when
// olds has no other key so equal (encoding/json's match), or "".
func foldedKey(news, olds map[string]*Schema, name string) string {
	var found []string
	for k := range news {
		if strings.EqualFold(k, name) {
			found = append(found, k)
		}
	}
	for k := range olds {
		if k != name && strings.EqualFold(k, name) {
			return ""
		}
	}
	if len(found) != 1 {
		return ""
	}
	return found[0]
}

// resolve returns the schema s refers to in types, s itself when it
// refers to none, nil when types lacks it.
func resolve(s *Schema, types map[string]*Schema) *Schema {
	name, ok := strings.CutPrefix(s.Ref, TypeRef)
	if !ok {
		return s
	}
	return types[name]
}

// shapeOf names the JSON a schema admits, as far as compatibility goes:
// its type, with a string's format or encoding, an object's form (fields
// or a map).
func shapeOf(s *Schema) string {
	shape := s.Type
	switch {
	case s.Type == "" && len(s.OneOf) == 0 && len(s.AnyOf) == 0:
		return "any"
	case s.Type == "":
		return "one of several"
	case s.Type == "string" && s.Format != "":
		shape += " (" + s.Format + ")"
	case s.ContentEncoding != "":
		shape += " (" + s.ContentEncoding + ")"
	case s.Type == "object" && s.AdditionalProperties != nil:
		shape = "map"
	}
	return shape
}

// keyShape names the keys of a map: strings (no propertyNames), or the
// integers of a range.
func keyShape(k *Schema) string {
	switch {
	case k == nil:
		return "strings"
	case k.Format != "":
		return k.Format + " integers"
	}
	return k.Pattern
}

func sortedKeys(m map[string]*Schema) []string {
	return slices.Sorted(maps.Keys(m))
}

// version returns the major and minor numbers of v ("1.0" when unset).
func version(v string) (major, minor int) {
	a, b, _ := strings.Cut(v, ".")
	b, _, _ = strings.Cut(b, ".") // an oslo.messaging revision, major.minor.revision
	major, _ = strconv.Atoi(a)
	minor, _ = strconv.Atoi(b)
	if v == "" {
		major = 1
	}
	return major, minor
}
