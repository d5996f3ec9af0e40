package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/amqprpc/amqprpc/internal/wire"
)

// The AsyncAPI 3.0 document of the interfaces of f (-asyncapi): the
// channels their requests and replies travel on, a message for each
// request and reply, an operation for each method, and the JSON Schema of
// every value, as docs/PROTOCOL.md describes the wire. Other languages'
// tools can read it to call or serve the interfaces; it is JSON with
// sorted keys, so that a diff in review shows what changed.

// obj is a JSON object of the document; encoding/json sorts its keys.
type obj = map[string]any

// asyncapiFile returns the AsyncAPI document of f as indented JSON ending
// in a newline.
func asyncapiFile(f *file) ([]byte, error) {
	var names, versions []string
	channels, operations := obj{}, obj{}
	for _, svc := range f.services {
		names = append(names, svc.name)
		versions = append(versions, or1(svc.version))
		asyncapiService(svc, channels, operations)
	}
	return document(f, strings.Join(names, ", "), versions, fmt.Sprintf("The amqprpc interface%s %s of Go package %s, as amqprpc-gen reads %s: "+
		"requests are JSON objects published to a topic exchange (amqprpc by default) with the topic as routing key, "+
		"replies come back to the caller's reply_to queue through the default exchange with the request's correlation_id. "+
		"See amqprpc's docs/PROTOCOL.md.", plural(len(names)), strings.Join(names, ", "), f.pkgPath, them(len(names))), channels, operations)
}

// document returns the AsyncAPI document of f with its info, channels and
// operations, and the schemas of f's named types as its components.
func document(f *file, title string, versions []string, description string, channels, operations obj) ([]byte, error) {
	doc := obj{
		"asyncapi": "3.0.0",
		"info": obj{
			"title":       title,
			"version":     strings.Join(slices.Compact(versions), ", "),
			"description": description,
		},
		"defaultContentType": "application/json",
		"channels":           channels,
		"operations":         operations,
	}
	if len(f.schemas) > 0 {
		defs := make(map[string]*schema, len(f.schemas))
		for name, s := range f.schemas {
			defs[name] = asyncSchema(s)
		}
		doc["components"] = obj{"schemas": defs}
	}
	return indentJSON(doc)
}

// channel is a channel of the document; address nil for one that the
// message says (a reply queue), params nil for none.
func channel(address any, title, description string, params, messages, bindings obj) obj {
	ch := obj{"address": address, "title": title, "description": description, "messages": messages, "bindings": bindings}
	if params != nil {
		ch["parameters"] = params
	}
	return ch
}

// toExchange is the AMQP binding of a channel whose messages are
// published to an exchange with a routing key.
func toExchange(name, kind string, durable, autoDelete bool) obj {
	return obj{"amqp": obj{"is": "routingKey", "bindingVersion": "0.3.0",
		"exchange": obj{"name": name, "type": kind, "durable": durable, "autoDelete": autoDelete, "vhost": "/"}}}
}

// toQueue is the AMQP binding of a channel that is a queue of the caller.
func toQueue(autoDelete bool) obj {
	return obj{"amqp": obj{"is": "queue", "bindingVersion": "0.3.0",
		"queue": obj{"durable": false, "exclusive": true, "autoDelete": autoDelete, "vhost": "/"}}}
}

// replyTo is an operation's reply: its messages, named on the channel
// repID, at the address location says.
func replyTo(location, description, repID string, names ...string) obj {
	var msgs []any
	for _, n := range names {
		msgs = append(msgs, ref("#/channels/"+repID+"/messages/"+n))
	}
	return obj{
		"address":  obj{"location": location, "description": description},
		"channel":  ref("#/channels/" + repID),
		"messages": msgs,
	}
}

// The address of an amqprpc reply.
const replyToHeader, replyToNote = "$message.header#/reply_to", "The request's reply_to property: the caller's reply queue."

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func them(n int) string {
	if n == 1 {
		return "it"
	}
	return "them"
}

// asyncapiService adds the channels and operations of svc: channels
// <Service>.requests, <Service>.fanout (when a method is a fanout) and
// <Service>.replies (when a method has replies), an operation
// <Service>.<method> for each method.
func asyncapiService(svc *service, channels, operations obj) {
	reqID, srvID, fanID, repID, credID := svc.name+".requests", svc.name+".server", svc.name+".fanout", svc.name+".replies", svc.name+".credits"
	topic := obj{"topic": obj{"description": "The topic the interface is served on, chosen when servers start."}}
	server := obj{"topic": topic["topic"], "server": obj{"description": "The name of one server of the topic, chosen when it starts."}}
	requests, toServer, fanouts, replies, credits := obj{}, obj{}, obj{}, obj{}, obj{}
	for _, m := range svc.methods {
		req := requestMessage(svc, m)
		ch, chID := requests, reqID
		if m.mode == fanoutMode {
			ch, chID = fanouts, fanID
		}
		reqName := m.wire + ".request"
		ch[reqName] = req
		if m.mode != fanoutMode {
			toServer[reqName] = ref("#/channels/" + reqID + "/messages/" + reqName)
		}
		if m.gather {
			fanouts[reqName] = ref("#/channels/" + reqID + "/messages/" + reqName)
			operations[svc.name+"."+m.wire+".gather"] = obj{
				"action":   "send",
				"title":    "Gather" + m.name,
				"summary":  "A gather: the call to every server of the topic, each of which replies.",
				"channel":  ref("#/channels/" + fanID),
				"messages": []any{ref("#/channels/" + fanID + "/messages/" + reqName)},
				"reply":    replyTo(replyToHeader, replyToNote, repID, m.wire+".reply"),
			}
		}
		op := obj{
			"action":   "send",
			"title":    m.name,
			"channel":  ref("#/channels/" + chID),
			"messages": []any{ref("#/channels/" + chID + "/messages/" + reqName)},
		}
		if m.doc != "" {
			op["description"] = strings.TrimSpace(m.doc)
		}
		var replyNames []string
		switch m.mode {
		case callMode:
			replies[m.wire+".reply"] = replyMessage(svc, m)
			replyNames = []string{m.wire + ".reply"}
			op["summary"] = "A call: one request, one reply."
		case streamMode:
			replies[m.wire+".items"] = itemsMessage(m)
			replies[m.wire+".end"] = endMessage(svc, m)
			replyNames = []string{m.wire + ".items", m.wire + ".end"}
			op["summary"] = "A stream: one request, replies of items until one that ends it."
			credits[m.wire+".credit"] = creditMessage(m)
			credits[m.wire+".cancel"] = cancelMessage(m)
			operations[svc.name+"."+m.wire+".credit"] = obj{
				"action":  "send",
				"title":   m.name + " credit",
				"summary": "The caller of a stream grants its server more items, or cancels the stream.",
				"channel": ref("#/channels/" + credID),
				"messages": []any{ref("#/channels/" + credID + "/messages/" + m.wire + ".credit"),
					ref("#/channels/" + credID + "/messages/" + m.wire + ".cancel")},
			}
		case castMode:
			op["summary"] = "A cast: no reply; the caller waits for the broker's confirm."
		case fanoutMode:
			op["summary"] = "A fanout: to every server of the topic, no reply."
		}
		if replyNames != nil {
			op["reply"] = replyTo(replyToHeader, replyToNote, repID, replyNames...)
		}
		operations[svc.name+"."+m.wire] = op
	}
	requestExchange := toExchange("amqprpc", "topic", true, false)
	channels[reqID] = channel("{topic}", svc.name+" requests",
		"Requests to servers of "+svc.name+": published to the request exchange with the topic as routing key.",
		topic, requests, requestExchange)
	if len(toServer) > 0 {
		channels[srvID] = channel("{topic}.{server}", svc.name+" requests to one server",
			"The requests of "+svc.name+"'s calls, casts and streams, to one server of the topic: published to the request exchange with <topic>.<server> as routing key. Its operations are the requests channel's, sent here instead.",
			server, toServer, requestExchange)
	}
	if len(credits) > 0 {
		channels[credID] = channel(nil, svc.name+" stream credits",
			"A stream's credits and cancellation, from its caller to the server that runs it: published to the request exchange with the queue that the stream's messages name in amqprpc-credit-to (<topic>.credits_<id>, the server's own) as routing key.",
			nil, credits, requestExchange)
	}
	if len(fanouts) > 0 {
		channels[fanID] = channel("{topic}", svc.name+" fanouts",
			"Requests to every server of "+svc.name+", fanouts and gathers: published to the fanout exchange <exchange>.fanout.<topic> (amqprpc.fanout.<topic> by default), which ignores the routing key.",
			topic, fanouts, toExchange("amqprpc.fanout.{topic}", "fanout", false, false))
	}
	if len(replies) > 0 {
		channels[repID] = channel(nil, svc.name+" replies",
			"Replies to a caller of "+svc.name+": published through the default exchange to the queue its request's reply_to names (one of the caller's own, named by the broker), with the request's id as correlation_id.",
			nil, replies, toQueue(true))
	}
}

// asyncSchema is s with its references to types pointing at the
// document's components.
func asyncSchema(s *schema) *schema { return s.Rebase("#/components/schemas/") }

func ref(to string) obj { return obj{"$ref": to} }

// requestMessage is the message of m's requests.
func requestMessage(svc *service, m *method) obj {
	args := &schema{Type: "object", Properties: map[string]*schema{}, Description: "The arguments by wire name; a missing one is its type's zero value."}
	for _, p := range m.params {
		args.Properties[p.wire] = asyncSchema(p.schema)
	}
	payload := &schema{Type: "object", Required: []string{"method"}, Properties: map[string]*schema{
		"method": {Type: "string", Const: m.wire},
		"args":   args,
		"version": {Type: "string", Pattern: `^[0-9]+\.[0-9]+$`,
			Description: "The interface version the method needs, major.minor; left out for 1.0. amqprpc clients send " + or1(m.since) + "."},
	}}
	if m.mode == callMode || m.mode == streamMode {
		payload.Properties["msg_id"] = &schema{Type: "string", Description: "The request's id, as its correlation_id."}
	}
	msg := obj{
		"name":          m.wire + ".request",
		"title":         svc.name + "." + m.name + " request",
		"payload":       payload,
		"correlationId": obj{"location": "$message.header#/correlation_id"},
		"bindings":      obj{"amqp": obj{"bindingVersion": "0.3.0"}},
	}
	if m.doc != "" {
		msg["description"] = strings.TrimSpace(m.doc)
	}
	if m.mode == callMode || m.mode == streamMode {
		headers := requestHeaders()
		headers.Required = []string{"reply_to"}
		headers.Properties["reply_to"] = &schema{Type: "string", Description: "The AMQP reply_to property: the caller's reply queue."}
		headers.Properties["correlation_id"] = &schema{Type: "string", Description: "The AMQP correlation_id property: the request's id, which its replies carry back."}
		if m.mode == streamMode {
			headers.Properties[wire.StreamHeader] = &schema{Type: "integer", Description: "The stream's window: how many items the server may send before the caller grants more (1 to 65536)."}
			headers.Required = append(headers.Required, wire.StreamHeader)
		}
		msg["headers"] = headers
	} else {
		msg["headers"] = requestHeaders()
	}
	return msg
}

// requestHeaders is the schema of the headers every request may carry:
// its deadline and the caller's metadata.
func requestHeaders() *schema {
	return &schema{Type: "object", Description: "Other headers whose values are strings, and whose names begin with neither amqprpc- nor x-, are the caller's metadata (traceparent, for one).",
		Properties: map[string]*schema{
			wire.DeadlineHeader: {Type: "integer", Description: "The caller's deadline, in milliseconds since the Unix epoch: the method's context ends then, and a server drops a request already past it."},
			"user_id":           {Type: "string", Description: "The AMQP user_id property: the broker user the caller logged in as, which the broker checks."},
		}}
}

// replyHeaders is the schema of the headers of a reply to m: a call's, or
// a stream's items and end.
func replyHeaders(m *method) *schema {
	h := &schema{Type: "object", Required: []string{"correlation_id"}, Properties: map[string]*schema{
		"correlation_id": {Type: "string", Description: "The AMQP correlation_id property: the request's."},
	}}
	if m.mode == streamMode {
		h.Properties[wire.SeqHeader] = &schema{Type: "integer", Description: "Items: the place of the message's first item in the stream, from 0. End: how many items the stream sent."}
		h.Properties[wire.CreditToHeader] = &schema{Type: "string", Description: "The queue to send the stream's credits and cancellation to (the credits channel)."}
		h.Required = append(h.Required, wire.SeqHeader, wire.CreditToHeader)
		return h
	}
	h.Properties[wire.ServerHeader] = &schema{Type: "string", Description: "The replying server's name, on a reply to a request sent to every server of the topic (a gather)."}
	h.Properties[wire.QueueLimitHeader] = &schema{Type: "integer", Description: "The length limit of the topic's queue, when it has one: its callers publish calls in confirm mode, so that one the broker refuses fails at once."}
	return h
}

// creditMessage is the message by which m's caller grants its server more
// items.
func creditMessage(m *method) obj {
	return obj{
		"name":        m.wire + ".credit",
		"title":       m.name + " credit",
		"description": "No body: the credit is in the header.",
		"headers": &schema{Type: "object", Required: []string{"correlation_id", wire.CreditHeader}, Properties: map[string]*schema{
			"correlation_id":  {Type: "string", Description: "The stream's request's id."},
			wire.CreditHeader: {Type: "integer", Description: "The place up to which the server may send items, exclusive: the items read so far and the window."},
		}},
		"correlationId": obj{"location": "$message.header#/correlation_id"},
		"bindings":      obj{"amqp": obj{"bindingVersion": "0.3.0", "messageType": wire.CreditType}},
	}
}

// cancelMessage is the message by which m's caller ends the stream.
func cancelMessage(m *method) obj {
	return obj{
		"name":          m.wire + ".cancel",
		"title":         m.name + " cancel",
		"description":   "No body.",
		"headers":       &schema{Type: "object", Required: []string{"correlation_id"}, Properties: map[string]*schema{"correlation_id": {Type: "string", Description: "The stream's request's id."}}},
		"correlationId": obj{"location": "$message.header#/correlation_id"},
		"bindings":      obj{"amqp": obj{"bindingVersion": "0.3.0", "messageType": wire.CancelType}},
	}
}

// replyMessage is the message of a reply to m, a call.
func replyMessage(svc *service, m *method) obj {
	return obj{
		"name":          m.wire + ".reply",
		"title":         svc.name + "." + m.name + " reply",
		"payload":       &schema{OneOf: []*schema{resultBody(resultSchema(m.results)), failureBody(svc)}},
		"headers":       replyHeaders(m),
		"correlationId": obj{"location": "$message.header#/correlation_id"},
		"bindings":      obj{"amqp": obj{"bindingVersion": "0.3.0", "messageType": wire.ReplyType}},
	}
}

// itemsMessage is the message of a batch of items of m, a stream.
func itemsMessage(m *method) obj {
	return obj{
		"name":          m.wire + ".items",
		"title":         m.name + " items",
		"payload":       &schema{Type: "array", Items: asyncSchema(m.item.schema), Description: "Items of the stream, in order; none, a beat: the server still runs the stream."},
		"headers":       replyHeaders(m),
		"correlationId": obj{"location": "$message.header#/correlation_id"},
		"bindings":      obj{"amqp": obj{"bindingVersion": "0.3.0", "messageType": wire.ItemsType}},
	}
}

// endMessage is the message that ends m, a stream.
func endMessage(svc *service, m *method) obj {
	return obj{
		"name":          m.wire + ".end",
		"title":         m.name + " end",
		"payload":       &schema{OneOf: []*schema{resultBody(&schema{Type: "null"}), failureBody(svc)}},
		"headers":       replyHeaders(m),
		"correlationId": obj{"location": "$message.header#/correlation_id"},
		"bindings":      obj{"amqp": obj{"bindingVersion": "0.3.0", "messageType": wire.EndType}},
	}
}

// resultSchema is the schema of the result of a call returning results:
// null for none, the value for one, an object of them by name for more.
func resultSchema(results []*param) *schema {
	switch len(results) {
	case 0:
		return &schema{Type: "null"}
	case 1:
		return asyncSchema(results[0].schema)
	}
	o := &schema{Type: "object", Properties: map[string]*schema{}}
	for _, r := range results {
		o.Properties[r.wire] = asyncSchema(r.schema)
		o.Required = append(o.Required, r.wire)
	}
	slices.Sort(o.Required)
	return o
}

func resultBody(result *schema) *schema {
	return &schema{Type: "object", Required: []string{"result"}, Properties: map[string]*schema{"result": result}}
}

// failureBody is the schema of a failure reply of svc's methods.
func failureBody(svc *service) *schema {
	desc := "Why the method failed."
	if len(svc.errors) > 0 {
		var names []string
		for _, e := range svc.errors {
			names = append(names, e.path+"."+e.name)
		}
		slices.Sort(names)
		desc += " type names the error when it is one the interface declares: " + strings.Join(names, ", ") + "."
	}
	failure := &schema{Type: "object", Required: []string{"code", "message"}, Description: desc, Properties: map[string]*schema{
		"code":    {Type: "string", Description: "The failure code, e.g. unknown, invalid_argument, unimplemented, unsupported_version, deadline_exceeded."},
		"message": {Type: "string"},
		"type":    {Type: "string", Description: "The Go package path and name of a declared error."},
		"detail":  {Description: "The JSON form of a declared error type's value."},
	}}
	return &schema{Type: "object", Required: []string{"failure"}, Properties: map[string]*schema{"failure": failure}}
}
