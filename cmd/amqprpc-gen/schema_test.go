package main

import (
	"encoding/json"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"reflect"
	"testing"
)

// The schemas follow encoding/json: tags, omitempty, embedded structs
// flattened, unexported and "-" fields left out, []byte as base64,
// time.Time as a date-time, json.Number as a number, types with their own
// encoding as theirs, named structs by reference, a recursive one
// included; nil pointers, slices and maps as null; integers and floats
// with their range, integer map keys with theirs.
func TestSchemas(t *testing.T) {
	const src = `package p

import (
	"encoding/json"
	"time"
)

type Base struct {
	ID   string ` + "`json:\"id\"`" + `
	Note string ` + "`json:\"note,omitempty\"`" + `
}

type Node struct {
	Name string
	Kids []*Node ` + "`json:\"kids,omitempty\"`" + `
}

type Raw struct{ x int }

func (Raw) MarshalJSON() ([]byte, error) { return nil, nil }

type Level int

func (Level) MarshalText() ([]byte, error) { return nil, nil }

type T struct {
	Base
	Count  int                  ` + "`json:\"count,string\"`" + `
	Hidden string               ` + "`json:\"-\"`" + `
	secret int
	At     time.Time            ` + "`json:\"at\"`" + `
	Data   []byte               ` + "`json:\"data\"`" + `
	Tags   map[string][]float64 ` + "`json:\"tags,omitempty\"`" + `
	Ptr    *bool                ` + "`json:\"ptr\"`" + `
	Root   Node                 ` + "`json:\"root\"`" + `
	Raw    Raw                  ` + "`json:\"raw\"`" + `
	Level  Level                ` + "`json:\"level\"`" + `
	Any    any                  ` + "`json:\"any\"`" + `
	Grid   [2][]string          ` + "`json:\"grid\"`" + `
	Num    json.Number          ` + "`json:\"num\"`" + `
	ByID   map[uint16]int8      ` + "`json:\"by_id\"`" + `
	ByLvl  map[Level]bool       ` + "`json:\"by_level\"`" + `
}
`
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "p.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	pkg, err := (&types.Config{Importer: importer.Default()}).Check("p", fset, []*ast.File{f}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := newSchemas(pkg)
	top := s.of(types.NewPointer(pkg.Scope().Lookup("T").Type()))
	got, _ := json.Marshal(map[string]any{"top": top, "defs": s.defs})
	const want = `{
	"top": {"anyOf": [{"$ref": "#/types/T"}, {"type": "null"}]},
	"defs": {
		"T": {"type": "object", "description": "Go type p.T", "properties": {
			"id": {"type": "string"},
			"note": {"type": "string"},
			"count": {"type": "string", "format": "int64"},
			"at": {"type": "string", "format": "date-time"},
			"data": {"anyOf": [{"type": "string", "contentEncoding": "base64"}, {"type": "null"}]},
			"tags": {"anyOf": [{"type": "object", "additionalProperties": {"anyOf": [{"type": "array", "items": {"type": "number", "format": "float64"}}, {"type": "null"}]}}, {"type": "null"}]},
			"ptr": {"anyOf": [{"type": "boolean"}, {"type": "null"}]},
			"root": {"$ref": "#/types/Node"},
			"raw": {},
			"level": {"type": "string"},
			"any": {},
			"grid": {"type": "array", "items": {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}]}},
			"num": {"type": "number"},
			"by_id": {"anyOf": [{"type": "object", "propertyNames": {"type": "string", "pattern": "^[0-9]+$", "format": "uint16"}, "additionalProperties": {"type": "integer", "format": "int8"}}, {"type": "null"}]},
			"by_level": {"anyOf": [{"type": "object", "additionalProperties": {"type": "boolean"}}, {"type": "null"}]}
		}, "required": ["any", "at", "by_id", "by_level", "count", "data", "grid", "id", "level", "num", "ptr", "raw", "root"]},
		"Node": {"type": "object", "description": "Go type p.Node", "properties": {
			"Name": {"type": "string"},
			"kids": {"anyOf": [{"type": "array", "items": {"anyOf": [{"$ref": "#/types/Node"}, {"type": "null"}]}}, {"type": "null"}]}
		}, "required": ["Name"]}
	}
}`
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("schemas:\n%s\nwant:\n%s", got, want)
	}
}

// encoding/json's rules for fields of one name: the shallowest wins, then
// the tagged one, and a tie drops them all.
func TestJSONFieldsDominance(t *testing.T) {
	const src = `package p

type A struct{ X, Y, Z int }
type B struct {
	X int
	Y int ` + "`json:\"Y\"`" + `
}
type inner struct{ V int }
type T struct {
	A
	B
	Z string
	inner ` + "`json:\"in\"`" + `
}
`
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "p.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	pkg, err := (&types.Config{}).Check("p", fset, []*ast.File{f}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range jsonFields(pkg.Scope().Lookup("T").Type().Underlying().(*types.Struct)) {
		got = append(got, f.name+":"+f.typ.String())
	}
	// X: A.X and B.X tie, dropped; Y: B's is tagged; Z: T's own; in: an
	// unexported embedded struct that its tag names.
	if want := []string{"Y:int", "Z:string", "in:p.inner"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("fields %v, want %v", got, want)
	}
}
