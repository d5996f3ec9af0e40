// Package describe is what an amqprpc server says it serves when it is
// asked (docs/PROTOCOL.md, Describing a server): the services, methods,
// modes, versions and JSON shapes that a tool needs to call its methods
// without their Go types, as cmd/amqprpc does. Every server answers a
// request for the method Request with a Server, whatever it serves.
//
//	replies, err := runtime.Gather[describe.Server](ctx, client, runtime.Request{
//		Target: runtime.Target{Topic: "calc"}, Method: describe.Request, Args: struct{}{}}, 0)
package describe

// Request is the wire name of the request that every server answers with
// its Server. No method can have it: amqprpc-gen refuses wire names
// beginning with "amqprpc.".
const Request = "amqprpc.describe"

// Server is what one server serves.
type Server struct {
	Topic    string    `json:"topic"`
	Name     string    `json:"server"`
	Services []Service `json:"services"`
}

// Service is one interface a server serves.
type Service struct {
	Name      string   `json:"name"`
	Version   string   `json:"version"`
	Namespace string   `json:"namespace,omitempty"`
	Methods   []Method `json:"methods"`
	// Errors are the wire names of the errors the service declares
	// (//amqprpc:errors), whose identity crosses the wire: their Go
	// package path and name.
	Errors []string `json:"errors,omitempty"`
	// Types are the schemas of the named struct types that the methods'
	// schemas refer to, by name.
	Types map[string]*Schema `json:"types,omitempty"`
}

// Method is one method of a service: what a tool needs to call it.
type Method struct {
	Name    string  `json:"name"`
	Mode    string  `json:"mode"` // call, cast, fanout or stream
	Gather  bool    `json:"gather,omitempty"`
	Since   string  `json:"since"`
	Params  []Field `json:"params"`
	Results []Field `json:"results"` // a stream's: one, its item
}

// Field is a parameter or a result of a method.
type Field struct {
	// Name is its wire name.
	Name string `json:"name"`
	// GoType is its Go type, as the interface's package spells it.
	GoType string `json:"go_type"`
	// JSON is the JSON it travels as: integer, number, string, boolean,
	// array, object, or any (a type with an encoding of its own).
	JSON string `json:"json"`
	// Schema is its JSON Schema, the fields of an object included; nil
	// from a server generated before descriptions carried schemas.
	Schema *Schema `json:"schema,omitempty"`
}
