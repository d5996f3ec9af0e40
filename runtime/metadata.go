package runtime

import (
	"context"
	"maps"
	"strconv"
)

// Metadata is what a request carries besides its arguments, as gRPC's
// metadata: keys and string values, sent as AMQP headers of the request
// (in amqprpc's protocol; docs/PROTOCOL.md), for tracing (traceparent),
// authentication, tenancy. Keys are header names: lower case by
// convention, at most 255 bytes (a longer one fails its call with
// ErrNameTooLong); those beginning with "amqprpc-" or "x-" are the
// runtime's and the broker's, and are not sent.
type Metadata map[string]string

type outgoingKey struct{}
type incomingKey struct{}

// WithMetadata returns ctx with md added to the metadata that a client
// sends with requests made with it; a key already there takes md's value.
func WithMetadata(ctx context.Context, md Metadata) context.Context {
	out := maps.Clone(OutgoingMetadata(ctx))
	if out == nil {
		out = make(Metadata, len(md))
	}
	maps.Copy(out, md)
	return context.WithValue(ctx, outgoingKey{}, out)
}

// AppendMetadata is WithMetadata for metadata given as pairs, key then
// value: ctx with them added to the metadata a client sends with requests
// made with it, a key already there taking the pair's value. It makes one
// map, where a Metadata made for WithMetadata is a second, for
// interceptors that add metadata to every call. An odd number of strings
// is a mistake of the caller's, and panics, as gRPC's
// AppendToOutgoingContext does.
func AppendMetadata(ctx context.Context, kv ...string) context.Context {
	if len(kv)%2 != 0 {
		panic("amqprpc: AppendMetadata got an odd number of strings: " + strconv.Itoa(len(kv)))
	}
	in := OutgoingMetadata(ctx)
	out := make(Metadata, len(in)+len(kv)/2)
	maps.Copy(out, in)
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return context.WithValue(ctx, outgoingKey{}, out)
}

// OutgoingMetadata returns the metadata that requests made with ctx
// carry; do not modify it.
func OutgoingMetadata(ctx context.Context) Metadata {
	md, _ := ctx.Value(outgoingKey{}).(Metadata)
	return md
}

// IncomingMetadata returns, in a method's context (or a server
// interceptor's), the metadata its request carried; nil if none.
func IncomingMetadata(ctx context.Context) Metadata {
	md, _ := ctx.Value(incomingKey{}).(Metadata)
	return md
}
