package runtime

import (
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// protocol is everything clients and servers agree on with their peers,
// and nothing else: the messages (wireFormat: envelope, and batches where
// the protocol has them), the topology (exchanges and queues, their names
// and flags), how a server finds the method a request names, and the
// heartbeats of a long call. What a request carries besides its arguments
// (deadline, namespace, context) travels in outRequest and inRequest,
// which each protocol puts on the wire its own way. Two implement it:
// amqprpc's own (amqprpcProtocol) and oslo.messaging's (osloProtocol,
// WithOslo). Client and Server hold one and never ask which it is.
//
// How a server acknowledges is the protocol's too: WithOslo sets it, as an
// option, so that an option after it can change it.
type protocol interface {
	wireFormat

	// requestExchange is the exchange that calls and casts go to.
	requestExchange() exchangeSpec
	// fanoutExchange is the exchange that delivers a request to every
	// server of topic. A protocol whose fanout exchange is auto-delete has
	// it declared before each publication: it may have gone since.
	fanoutExchange(topic string) exchangeSpec
	// serverQueues are the queues of a server named server on topic:
	// the topic's, shared by its servers; the server's own, bound with
	// the key topic.server; and its queue on the fanout exchange. random
	// is new for each connection.
	serverQueues(topic, server, random string) (shared, own, fanout queueSpec)
	// replyQueue is a client's queue for replies, on one connection.
	replyQueue(random string) queueSpec

	// find returns the method of methods that req names, or the failure
	// to answer with: no such method, or not in the version (or
	// namespace) the request asks for.
	find(topic string, methods map[string]method, req *inRequest) (method, *Error)
	// gathers returns nil if a call may go to every server of a topic,
	// and otherwise why not.
	gathers() error
	// encodeHeartbeat fills pub with a heartbeat to the caller of a
	// request still running, for a request that asked for them
	// (inRequest.heartbeat).
	encodeHeartbeat(pub *amqp.Publishing, msgID string) error
	// isHeartbeat reports whether reply d is a heartbeat, not the reply.
	isHeartbeat(d *amqp.Delivery) bool
}

// exchangeSpec is an exchange as a protocol declares it.
type exchangeSpec struct {
	name, kind          string
	durable, autoDelete bool
}

// newProtocol returns the protocol cfg says: oslo.messaging's with
// WithOslo, else amqprpc's.
func newProtocol(cfg *config) protocol {
	if cfg.oslo != nil {
		return newOsloProtocol(cfg)
	}
	return &amqprpcProtocol{cfg: cfg}
}

// amqprpcProtocol is amqprpc's own protocol: the classic envelope, with
// batches, and the topology of topology.go.
type amqprpcProtocol struct {
	classic
	cfg *config
}

func (p *amqprpcProtocol) requestExchange() exchangeSpec {
	return exchangeSpec{name: p.cfg.exchange, kind: amqp.ExchangeTopic, durable: true}
}

// fanoutExchange is not auto-delete: it must not vanish between a
// client's declaration and its publication, which would close the channel.
func (p *amqprpcProtocol) fanoutExchange(topic string) exchangeSpec {
	return exchangeSpec{name: FanoutExchange(p.cfg.exchange, topic), kind: amqp.ExchangeFanout}
}

func (p *amqprpcProtocol) serverQueues(topic, server, random string) (shared, own, fanout queueSpec) {
	return topicQueue(topic, p.cfg), instanceQueue(topic+"."+server, random), instanceQueue(FanoutExchange(p.cfg.exchange, topic), random)
}

func (p *amqprpcProtocol) replyQueue(string) queueSpec { return replyQueue }

func (p *amqprpcProtocol) find(topic string, methods map[string]method, req *inRequest) (method, *Error) {
	m, ok := methods[req.method]
	if !ok {
		return m, &Error{Code: CodeUnimplemented, Message: fmt.Sprintf("topic %q has no method %s", topic, clip(req.method))}
	}
	if !compatible(m.desc.Version, req.version) {
		return m, &Error{Code: CodeUnsupportedVersion, Message: fmt.Sprintf("%s on topic %q is version %s; %q needs %s",
			m.desc.ServiceName, topic, versionOr1(m.desc.Version), req.method, versionOr1(req.version))}
	}
	return m, nil
}

func (p *amqprpcProtocol) gathers() error { return nil }

var errNoHeartbeats = errors.New("amqprpc: the protocol has no heartbeats")

func (p *amqprpcProtocol) encodeHeartbeat(*amqp.Publishing, string) error { return errNoHeartbeats }

func (p *amqprpcProtocol) isHeartbeat(*amqp.Delivery) bool { return false }

// declareExchange declares x on ch; one the broker has with other
// settings is an ErrTopologyMismatch.
func declareExchange(ch *amqp.Channel, x exchangeSpec) error {
	err := ch.ExchangeDeclare(x.name, x.kind, x.durable, x.autoDelete,
		false, // internal
		false, // noWait
		nil)
	if err != nil {
		return declareError("exchange", x.name, err)
	}
	return nil
}

// heartbeatInterval is how often a server sends heartbeats to a caller
// that asked for them every timeout: half of it, in whole seconds, and
// none below a second, as oslo.messaging servers do.
func heartbeatInterval(timeout time.Duration) time.Duration {
	return (timeout / time.Second / 2) * time.Second
}
