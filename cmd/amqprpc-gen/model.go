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
	// schemas are the JSON Schemas of the named struct types that the
	// params' schemas refer to, by name (components.schemas)
	schemas map[string]*schema
}

// service is one interface.
type service struct {
	name    string
	version string // "major.minor", or "" when the interface is not versioned
	// namespace is the interface's namespace, or "" for none: oslo.messaging
	// peers dispatch on it (runtime.ServiceDesc.Namespace).
	namespace string
	errors    []errorRef
	methods   []*method
	// types are the schemas of the named struct types its methods'
	// schemas refer to, by name: its share of file.schemas
	types map[string]*schema
	// clientImplements says that every method is already context-first and
	// error-last, so the generated client implements the interface itself.
	clientImplements bool
}

// errorRef is an error declared with //amqprpc:errors.
type errorRef struct {
	path    string // import path of its package
	name    string // the variable (sentinel) or the type (typed)
	typed   bool   // a type implementing error, rather than a variable
	pointer bool   // typed: *name implements error
}

// mode is how a method's requests travel.
type mode int

const (
	callMode mode = iota
	castMode
	fanoutMode
	// streamMode: the method returns one iter.Seq2[T, error], whose items
	// its server sends back as they come.
	streamMode
)

// method is one method of an interface.
type method struct {
	name     string
	wire     string
	doc      string // the user's doc comment, without directives
	pos      token.Position
	mode     mode
	gather   bool     // also generate Gather<name>
	since    string   // the version the client sends; "" for 1.0
	ctxName  string   // name of the leading context.Context parameter, if named
	hasCtx   bool     // the method takes a leading context.Context
	params   []*param // the parameters after the context, in order
	variadic bool     // the last parameter is variadic
	results  []*param // the results before the error; on the wire as one
	// value when there is one, as an object when there are several
	hasErr bool   // the method's last result is error
	item   *param // streamMode: each item of the stream, in place of results
}

// param is one parameter or result of a method.
type param struct {
	name   string  // Go name in the interface; "" for an unnamed result
	wire   string  // name in the args (or result) object
	field  string  // field of the generated struct
	typ    *typ    // for a variadic parameter, the slice type
	goType string  // the type as the interface's package spells it, for descriptions
	shape  string  // the JSON it travels as: integer, number, string, boolean, array, object or any
	schema *schema // the JSON Schema of what it travels as
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
