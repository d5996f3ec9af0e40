package main

import "go/token"

// The model is everything the emitter needs to know about the interfaces
// being generated for, in plain values: no go/types, no AST. The load and
// check stages build it; emit renders it.

// file is one generated file.
type file struct {
	pkgName  string
	pkgPath  string
	command  string            // how the generator was run, for the header
	taken    map[string]bool   // names declared at package scope outside the output
	imports  map[string]string // import path -> package name, for the types used
	services []*service
}

// service is one interface.
type service struct {
	name    string
	methods []*method
	// clientImplements says that every method is already context-first and
	// error-last, so the generated client implements the interface itself.
	clientImplements bool
}

// method is one method of an interface.
type method struct {
	name     string
	wire     string
	doc      string // the user's doc comment, without directives
	pos      token.Position
	ctxName  string   // name of the leading context.Context parameter, if named
	hasCtx   bool     // the method takes a leading context.Context
	params   []*param // the parameters after the context, in order
	variadic bool     // the last parameter is variadic
	result   *typ     // nil when the method returns no value
	hasErr   bool     // the method's last result is error
}

// param is one parameter of a method.
type param struct {
	name  string // Go name in the interface
	wire  string // name in the args object
	field string // field of the generated argument struct
	typ   *typ   // for a variadic parameter, the slice type
}

type kind int

const (
	basicKind kind = iota
	namedKind
	pointerKind
	sliceKind
	arrayKind
	mapKind
	structKind
	anyKind
)

// typ is a type that can cross the wire, as the emitter must spell it.
type typ struct {
	kind kind
	name string // basicKind, namedKind: the type's name
	path string // namedKind: the import path of its package, "" for the universe
	len  int64  // arrayKind
	elem *typ   // pointerKind, sliceKind, arrayKind, mapKind
	key  *typ   // mapKind
	args []*typ // namedKind: type arguments of an instance
	// structKind: the fields of an unnamed struct
	fields []field
}

type field struct {
	name     string
	typ      *typ
	tag      string
	embedded bool
}
