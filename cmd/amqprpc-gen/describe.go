package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"slices"

	"github.com/amqprpc/amqprpc/describe"
)

// The description of the interfaces of f, as a server of them answers
// describe.Request (runtime/describe.go makes the same of the generated
// ServiceDesc): stable text, sorted, so that a diff in review shows what
// changed on the wire (-describe).

// describeFile returns the description of every interface of f, sorted by
// name, as indented JSON ending in a newline.
func describeFile(f *file) ([]byte, error) {
	var services []describe.Service
	for _, svc := range f.services {
		services = append(services, describeService(svc))
	}
	slices.SortFunc(services, func(a, b describe.Service) int { return cmp.Compare(a.Name, b.Name) })
	return indentJSON(services)
}

// indentJSON writes v as the generator's JSON files are: indented, keys
// sorted, < > & as they are, and a newline at the end.
func indentJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// describeService describes svc.
func describeService(svc *service) describe.Service {
	d := describe.Service{Name: svc.name, Version: or1(svc.version), Namespace: svc.namespace, Methods: []describe.Method{}, Types: svc.types}
	for _, m := range svc.methods {
		results := m.results
		if m.item != nil {
			results = []*param{m.item}
		}
		d.Methods = append(d.Methods, describe.Method{Name: m.wire, Mode: modeNames[m.mode], Gather: m.gather, Since: or1(m.since),
			Params: describeFields(m.params), Results: describeFields(results)})
	}
	slices.SortFunc(d.Methods, func(a, b describe.Method) int { return cmp.Compare(a.Name, b.Name) })
	for _, e := range svc.errors {
		d.Errors = append(d.Errors, e.path+"."+e.name)
	}
	slices.Sort(d.Errors)
	return d
}

// modeNames are the modes as descriptions name them (runtime.Mode.String).
var modeNames = map[mode]string{callMode: "call", castMode: "cast", fanoutMode: "fanout", streamMode: "stream"}

func describeFields(params []*param) []describe.Field {
	fields := []describe.Field{}
	for _, p := range params {
		fields = append(fields, describe.Field{Name: p.wire, GoType: p.goType, JSON: p.shape, Schema: p.schema})
	}
	return fields
}

// or1 is version v, "1.0" when unset.
func or1(v string) string {
	if v == "" {
		return "1.0"
	}
	return v
}
