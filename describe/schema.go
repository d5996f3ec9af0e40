package describe

import (
	"slices"
	"strings"
)

// Schema is the JSON Schema (draft-07) of the JSON a parameter, a result
// or a stream item travels as, as encoding/json makes it of the Go type:
// a struct's fields by their JSON names, those that omitempty leaves out
// not required. The zero Schema is {}: any JSON value, as for a type with
// an encoding of its own. A named struct type is a reference, "$ref":
// "#/types/<Name>", to the schema under its name in its service's Types,
// which is how recursive types are written.
type Schema struct {
	Ref                  string             `json:"$ref,omitempty"`
	Type                 string             `json:"type,omitempty"`
	Format               string             `json:"format,omitempty"`
	ContentEncoding      string             `json:"contentEncoding,omitempty"`
	Description          string             `json:"description,omitempty"`
	Const                string             `json:"const,omitempty"`
	Pattern              string             `json:"pattern,omitempty"`
	Items                *Schema            `json:"items,omitempty"`
	Properties           map[string]*Schema `json:"properties,omitempty"`
	Required             []string           `json:"required,omitempty"`
	AdditionalProperties *Schema            `json:"additionalProperties,omitempty"`
	PropertyNames        *Schema            `json:"propertyNames,omitempty"`
	OneOf                []*Schema          `json:"oneOf,omitempty"`
	AnyOf                []*Schema          `json:"anyOf,omitempty"`
}

// Nullable returns the schema s admits beside null, when s is the schema
// of a nil-able value (a pointer, slice or map: {"anyOf": [X, {"type":
// "null"}]}), or nil.
func Nullable(s *Schema) *Schema {
	if s == nil || len(s.AnyOf) != 2 || s.Type != "" || s.Ref != "" {
		return nil
	}
	for i, alt := range s.AnyOf {
		if alt.Type == "null" && alt.Ref == "" && len(alt.AnyOf) == 0 {
			return s.AnyOf[1-i]
		}
	}
	return nil
}

// TypeRef is how a Schema refers to a type of its service's Types.
const TypeRef = "#/types/"

// Rebase returns a copy of s whose references to types begin with prefix
// instead of TypeRef: "#/components/schemas/" in an AsyncAPI document.
func (s *Schema) Rebase(prefix string) *Schema {
	if s == nil {
		return nil
	}
	c := *s
	if name, ok := strings.CutPrefix(s.Ref, TypeRef); ok {
		c.Ref = prefix + name
	}
	c.Items = s.Items.Rebase(prefix)
	c.AdditionalProperties = s.AdditionalProperties.Rebase(prefix)
	if s.Properties != nil {
		c.Properties = make(map[string]*Schema, len(s.Properties))
		for k, v := range s.Properties {
			c.Properties[k] = v.Rebase(prefix)
		}
	}
	c.OneOf = rebaseAll(s.OneOf, prefix)
	c.AnyOf = rebaseAll(s.AnyOf, prefix)
	return &c
}

// Refs calls yield with the name of each type s refers to, directly or
// through its parts (not through the types themselves).
func (s *Schema) Refs(yield func(name string)) {
	if s == nil {
		return
	}
	if name, ok := strings.CutPrefix(s.Ref, TypeRef); ok {
		yield(name)
	}
	s.Items.Refs(yield)
	s.AdditionalProperties.Refs(yield)
	for _, v := range s.Properties {
		v.Refs(yield)
	}
	for _, v := range slices.Concat(s.OneOf, s.AnyOf) {
		v.Refs(yield)
	}
}

func rebaseAll(s []*Schema, prefix string) []*Schema {
	if s == nil {
		return nil
	}
	c := make([]*Schema, len(s))
	for i, v := range s {
		c[i] = v.Rebase(prefix)
	}
	return c
}
