package runtime

import (
	"cmp"
	"context"
	"slices"

	"github.com/amqprpc/amqprpc/describe"
	"github.com/amqprpc/amqprpc/internal/wire"
)

// describeService returns the description of desc.
func describeService(desc *ServiceDesc) describe.Service {
	d := describe.Service{Name: desc.ServiceName, Version: wire.VersionOr1(desc.Version), Namespace: desc.Namespace, Types: desc.Types}
	for _, m := range desc.Methods {
		d.Methods = append(d.Methods, describe.Method{Name: m.Name, Mode: m.Mode.String(), Gather: m.Gather, Since: wire.VersionOr1(m.Since),
			Params: nonNil(m.Params), Results: nonNil(m.Results)})
	}
	slices.SortFunc(d.Methods, func(a, b describe.Method) int { return cmp.Compare(a.Name, b.Name) })
	for _, e := range desc.Errors {
		d.Errors = append(d.Errors, e.Type)
	}
	slices.Sort(d.Errors)
	return d
}

func nonNil(f []FieldDesc) []FieldDesc {
	if f == nil {
		return []FieldDesc{}
	}
	return f
}

// describe answers describe.Request.
func (sv *services) describe(context.Context) (any, error) {
	d := describe.Server{Topic: sv.topic, Name: sv.server}
	seen := map[*ServiceDesc]bool{}
	for _, m := range sv.methods {
		if !seen[m.desc] {
			seen[m.desc] = true
			d.Services = append(d.Services, describeService(m.desc))
		}
	}
	slices.SortFunc(d.Services, func(a, b describe.Service) int { return cmp.Compare(a.Name, b.Name) })
	return d, nil
}
