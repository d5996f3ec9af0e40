package runtime

import (
	"context"
	"maps"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Metadata is what a request carries besides its arguments, as gRPC's
// metadata: keys and string values, sent as AMQP headers of the request
// (in amqprpc's protocol; docs/PROTOCOL.md), for tracing (traceparent),
// authentication, tenancy. Keys are header names: lower case by
// convention; those beginning with "amqprpc-" or "x-" are the runtime's
// and the broker's, and are not sent.
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

// reservedHeader reports whether a header is the runtime's or the
// broker's rather than metadata.
func reservedHeader(key string) bool {
	return strings.HasPrefix(key, "amqprpc-") || strings.HasPrefix(key, "x-")
}

// putMetadata adds md to headers, which it makes if nil, and returns them.
func putMetadata(headers amqp.Table, md Metadata) amqp.Table {
	for k, v := range md {
		if reservedHeader(k) {
			continue
		}
		if headers == nil {
			headers = make(amqp.Table, len(md)+1)
		}
		headers[k] = v
	}
	return headers
}

// metadataOf returns the metadata of headers: those that are strings and
// not reserved; nil if none.
func metadataOf(headers amqp.Table) Metadata {
	var md Metadata
	for k, v := range headers {
		s, ok := v.(string)
		if !ok || reservedHeader(k) {
			continue
		}
		if md == nil {
			md = make(Metadata)
		}
		md[k] = s
	}
	return md
}
