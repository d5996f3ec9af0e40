package main

import (
	"fmt"
	"strings"
)

// The AsyncAPI 3.0 document of the interfaces of f as a client or a server
// in oslo.messaging's protocol (runtime.WithOslo) speaks them
// (-asyncapi-oslo): oslo.messaging's control exchange, topic, server and
// fanout routing, its envelope around every message, and its replies, as
// docs/PROTOCOL.md's oslo.messaging section says.

// osloEnvelopeNote says where the 2.0 envelope carries the message.
const osloEnvelopeNote = "oslo.messaging's 2.0 envelope, whose oslo.message is the message as JSON text; a Go peer also reads the message without it (1.0), as the other alternative."

// asyncapiOsloFile returns the oslo mode AsyncAPI document of f, or an
// error when an interface has a method oslo.messaging cannot carry.
func asyncapiOsloFile(f *file) ([]byte, error) {
	var names, versions []string
	channels, operations := obj{}, obj{}
	for _, svc := range f.services {
		for _, m := range svc.methods {
			if m.mode == streamMode {
				return nil, fmt.Errorf("%s.%s is a stream, which oslo.messaging's protocol does not have", svc.name, m.name)
			}
		}
		names = append(names, svc.name)
		versions = append(versions, or1(svc.version))
		asyncapiOsloService(svc, channels, operations)
	}
	return document(f, strings.Join(names, ", ")+" (oslo.messaging)", versions,
		fmt.Sprintf("The amqprpc interface%s %s of Go package %s in oslo.messaging's RPC protocol (runtime.WithOslo), "+
			"as OpenStack services speak it: requests published to the control exchange (control_exchange, openstack by default) with the topic, "+
			"or <topic>.<server>, as routing key, or to the fanout exchange <topic>_fanout; replies published through the default exchange "+
			"to the queue the request's _reply_q names. Every message is JSON in %s See amqprpc's docs/PROTOCOL.md.",
			plural(len(names)), strings.Join(names, ", "), f.pkgPath, osloEnvelopeNote), channels, operations)
}

// asyncapiOsloService adds the channels and operations of svc in oslo
// mode: <Service>.topic, <Service>.server, <Service>.fanout (when a method
// is a fanout) and <Service>.replies (when a method is a call).
func asyncapiOsloService(svc *service, channels, operations obj) {
	topicID, srvID, fanID, repID := svc.name+".topic", svc.name+".server", svc.name+".fanout", svc.name+".replies"
	topic := obj{"description": "The topic (oslo.messaging's Target.topic)."}
	requests, toServer, fanouts, replies := obj{}, obj{}, obj{}, obj{}
	for _, m := range svc.methods {
		reqName := m.wire + ".request"
		ch, chID := requests, topicID
		if m.mode == fanoutMode {
			ch, chID = fanouts, fanID
		}
		ch[reqName] = osloRequest(svc, m)
		if m.mode != fanoutMode {
			toServer[reqName] = ref("#/channels/" + topicID + "/messages/" + reqName)
		}
		op := obj{
			"action":   "send",
			"title":    m.name,
			"channel":  ref("#/channels/" + chID),
			"messages": []any{ref("#/channels/" + chID + "/messages/" + reqName)},
			"bindings": obj{"amqp": obj{"bindingVersion": "0.3.0", "deliveryMode": 2}},
		}
		if m.doc != "" {
			op["description"] = strings.TrimSpace(m.doc)
		}
		switch m.mode {
		case callMode:
			op["summary"] = "A call (oslo.messaging's RPCClient.call): one request, its reply, and heartbeats while the method runs when the caller sent _timeout."
			replies[m.wire+".reply"] = osloReply(svc, m)
			op["reply"] = replyTo("$message.payload#/_reply_q", "The request's _reply_q: the caller's reply queue (in the 2.0 envelope, inside oslo.message).",
				repID, m.wire+".reply")
		case castMode:
			op["summary"] = "A cast (RPCClient.cast): no reply."
		case fanoutMode:
			op["summary"] = "A fanout (a cast with fanout=True): to every server of the topic, no reply."
		}
		operations[svc.name+"."+m.wire] = op
	}
	control := toExchange("openstack", "topic", false, false)
	channels[topicID] = channel("{topic}", svc.name+" requests",
		"Requests to a server of the topic: published to the control exchange (control_exchange; openstack by default, durable as amqp_durable_queues says) with the topic as routing key.",
		obj{"topic": topic}, requests, control)
	if len(toServer) > 0 {
		channels[srvID] = channel("{topic}.{server}", svc.name+" requests to one server",
			"Requests to one server (Target.server): published to the control exchange with <topic>.<server> as routing key. Its operations are the topic channel's, sent here instead.",
			obj{"topic": topic, "server": obj{"description": "The server's name (oslo.messaging's Target.server, its host)."}}, toServer, control)
	}
	if len(fanouts) > 0 {
		channels[fanID] = channel("{topic}_fanout", svc.name+" fanouts",
			"Requests to every server of the topic: published to the fanout exchange <topic>_fanout, which ignores the routing key.",
			obj{"topic": topic}, fanouts, toExchange("{topic}_fanout", "fanout", false, true))
	}
	if len(replies) > 0 {
		channels[repID] = channel(nil, svc.name+" replies",
			"Replies to a caller: published through the default exchange to the queue the request's _reply_q names (reply_<hex>, the caller's own).",
			nil, replies, toQueue(false))
	}
}

// osloEnveloped is the payload of an oslo.messaging message whose content
// is message: the 2.0 envelope around it, or it alone (1.0).
func osloEnveloped(message *schema) obj {
	envelope := obj{
		"type":     "object",
		"required": []string{"oslo.version", "oslo.message"},
		"properties": obj{
			"oslo.version": obj{"type": "string", "const": "2.0"},
			"oslo.message": obj{"type": "string", "contentMediaType": "application/json",
				"description": "The message as JSON text, of the schema of this payload's other alternative."},
		},
	}
	return obj{"oneOf": []any{envelope, message}, "description": "The message in " + osloEnvelopeNote}
}

// osloRequest is the message of m's requests in oslo mode.
func osloRequest(svc *service, m *method) obj {
	args := &schema{Type: "object", Properties: map[string]*schema{}, Description: "The arguments by wire name (keyword arguments)."}
	for _, p := range m.params {
		args.Properties[p.wire] = asyncSchema(p.schema)
	}
	message := &schema{Type: "object", Required: []string{"method", "args", "_unique_id"},
		Description: "_context_<key> fields carry the request context (runtime.WithOsloContext), one for each key.",
		Properties: map[string]*schema{
			"method":     {Type: "string", Const: m.wire},
			"args":       args,
			"_unique_id": {Type: "string", Description: "New for every message: a server drops one whose _unique_id it saw."},
			"version": {Type: "string", Pattern: `^[0-9]+\.[0-9]+(\.[0-9]+)?$`,
				Description: "The interface version the method needs; amqprpc clients send " + or1(m.since) + " when above 1.0."},
		}}
	if svc.namespace != "" {
		message.Properties["namespace"] = &schema{Type: "string", Const: svc.namespace}
		message.Required = append(message.Required, "namespace")
	}
	if m.mode == callMode {
		message.Properties["_msg_id"] = &schema{Type: "string", Description: "The call's id, which its reply carries back."}
		message.Properties["_reply_q"] = &schema{Type: "string", Description: "The caller's reply queue."}
		message.Properties["_timeout"] = &schema{OneOf: []*schema{{Type: "integer"}, {Type: "null"}}, Description: "The caller's call monitor timeout in seconds: the server sends heartbeats every half of it."}
		message.Required = append(message.Required, "_msg_id", "_reply_q")
	}
	msg := obj{
		"name":     m.wire + ".request",
		"title":    svc.name + "." + m.name + " request",
		"payload":  osloEnveloped(message),
		"bindings": obj{"amqp": obj{"bindingVersion": "0.3.0", "contentEncoding": "utf-8"}},
	}
	if m.doc != "" {
		msg["description"] = strings.TrimSpace(m.doc)
	}
	return msg
}

// osloReply is the message of a reply to m, a call, in oslo mode: its
// result, its failure, or a heartbeat.
func osloReply(svc *service, m *method) obj {
	failure := "A Python exception as JSON text, {class, module, message, tb, args, kwargs}, or null."
	if len(svc.errors) > 0 {
		failure += " Declared errors travel as the classes OsloConfig.Exceptions maps them to."
	}
	message := &schema{Type: "object", Required: []string{"result", "failure", "ending", "_msg_id"},
		Description: "The reply (ending true), or a heartbeat while the method runs (result and failure null, ending false).",
		Properties: map[string]*schema{
			"result":     {AnyOf: []*schema{resultSchema(m.results), {Type: "null"}}, Description: "The method's result; null in a failure or a heartbeat."},
			"failure":    {OneOf: []*schema{{Type: "string"}, {Type: "null"}}, Description: failure},
			"ending":     {Type: "boolean"},
			"_msg_id":    {Type: "string", Description: "The request's _msg_id."},
			"_unique_id": {Type: "string"},
		}}
	return obj{
		"name":          m.wire + ".reply",
		"title":         svc.name + "." + m.name + " reply",
		"payload":       osloEnveloped(message),
		"correlationId": obj{"location": "$message.payload#/_msg_id"},
		"bindings":      obj{"amqp": obj{"bindingVersion": "0.3.0", "contentEncoding": "utf-8"}},
	}
}
