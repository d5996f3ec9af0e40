package runtime

import (
	"cmp"
	"context"
	"slices"

	"github.com/amqprpc/amqprpc/internal/wire"
)

// DescribeMethod is the wire name of the request that every server
// answers with its Description, whatever it serves: tools such as
// cmd/amqprpc send it to list and describe the servers of a topic without
// their Go types. No method can have it: amqprpc-gen refuses wire names
// beginning with "amqprpc.".
const DescribeMethod = "amqprpc.describe"

// Description is what a server serves, as it answers DescribeMethod.
type Description struct {
	Topic    string               `json:"topic"`
	Server   string               `json:"server"`
	Services []ServiceDescription `json:"services"`
}

// ServiceDescription describes one interface a server serves.
type ServiceDescription struct {
	Name      string              `json:"name"`
	Version   string              `json:"version"`
	Namespace string              `json:"namespace,omitempty"`
	Methods   []MethodDescription `json:"methods"`
}

// MethodDescription describes one method: what a tool needs to call it.
type MethodDescription struct {
	Name    string      `json:"name"`
	Mode    string      `json:"mode"` // call, cast or fanout
	Gather  bool        `json:"gather,omitempty"`
	Since   string      `json:"since"`
	Params  []FieldDesc `json:"params"`
	Results []FieldDesc `json:"results"`
}

// Describe returns the description of desc.
func Describe(desc *ServiceDesc) ServiceDescription {
	d := ServiceDescription{Name: desc.ServiceName, Version: wire.VersionOr1(desc.Version), Namespace: desc.Namespace}
	for _, m := range desc.Methods {
		d.Methods = append(d.Methods, MethodDescription{Name: m.Name, Mode: m.Mode.String(), Gather: m.Gather, Since: wire.VersionOr1(m.Since),
			Params: nonNil(m.Params), Results: nonNil(m.Results)})
	}
	slices.SortFunc(d.Methods, func(a, b MethodDescription) int { return cmp.Compare(a.Name, b.Name) })
	return d
}

func nonNil(f []FieldDesc) []FieldDesc {
	if f == nil {
		return []FieldDesc{}
	}
	return f
}

// describe answers DescribeMethod.
func (sv *services) describe(context.Context) (any, error) {
	d := Description{Topic: sv.topic, Server: sv.server}
	seen := map[*ServiceDesc]bool{}
	for _, m := range sv.methods {
		if !seen[m.desc] {
			seen[m.desc] = true
			d.Services = append(d.Services, Describe(m.desc))
		}
	}
	slices.SortFunc(d.Services, func(a, b ServiceDescription) int { return cmp.Compare(a.Name, b.Name) })
	return d, nil
}
