package runtime

import (
	"errors"
	"fmt"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Topology. Every queue amqprpc declares is durable or exclusive, and it
// uses no argument, and no global prefetch, that RabbitMQ 4.x denies by
// default, so that every RabbitMQ from 3.10 to 4.3 accepts it as it comes:
//
//   - the topic's queue, <topic>, shared by its servers, is durable: a
//     quorum queue (replicated, with a delivery limit) or a classic one
//     (WithQueueType), optionally deleted after a time unused
//     (WithQueueExpiry);
//   - a server's own queue, for requests sent to it by name, and its queue
//     on the topic's fanout exchange are exclusive to its connection, named
//     <topic>.<server>_<random> and <exchange>.fanout.<topic>_<random>;
//   - a client's reply queue is exclusive to its connection, named by the
//     broker.

// QueueType is the kind of queue a topic's requests wait in.
type QueueType string

const (
	// QueueQuorum is a quorum queue: replicated over the cluster's nodes,
	// it survives the loss of a minority of them, and the broker bounds how
	// often a request is delivered (WithDeliveryLimit).
	QueueQuorum QueueType = "quorum"
	// QueueClassic is a durable classic queue: it lives on one node, and
	// its requests with it.
	QueueClassic QueueType = "classic"
)

// queueSpec is a queue as amqprpc declares it.
type queueSpec struct {
	name                           string
	durable, autoDelete, exclusive bool
	args                           amqp.Table
	// mirrors says that the queue is declared as another system (an
	// oslo.messaging peer) declares it, with the settings the user gave
	// for it, rather than by amqprpc's own rules.
	mirrors bool
}

// declaredQueue, when set (by tests), sees every queue amqprpc declares.
var declaredQueue func(queueSpec)

// declareQueue declares q on ch; a queue the broker has with other
// properties or arguments is an ErrTopologyMismatch that says which.
func declareQueue(ch *amqp.Channel, q queueSpec) (amqp.Queue, error) {
	if declaredQueue != nil {
		declaredQueue(q)
	}
	got, err := ch.QueueDeclare(q.name, q.durable, q.autoDelete, q.exclusive,
		false, // noWait
		q.args)
	if err != nil {
		return got, declareError("queue", q.name, err)
	}
	return got, nil
}

// ErrTopologyMismatch is returned by Server.Serve, at once and for good,
// when the broker has a queue or an exchange of the server's topology with
// other properties or arguments than the server's options make: the
// broker then refuses every declaration of it (406 PRECONDITION_FAILED),
// and reconnecting would not change that. The error says what differs.
var ErrTopologyMismatch = errors.New("amqprpc: the broker has this topology with other settings")

// declareError is the error of declaring the queue or exchange name: when
// the broker has it with other settings, an ErrTopologyMismatch that says
// which and how to mend it.
func declareError(kind, name string, err error) error {
	var aerr *amqp.Error
	if !errors.As(err, &aerr) || aerr.Code != amqp.PreconditionFailed {
		return fmt.Errorf("amqprpc: declare %s %q: %w", kind, name, err)
	}
	fix := "delete it (rabbitmqctl delete_" + kind + " " + name + ") so that it is declared anew"
	if kind == "queue" {
		fix = "make the server's options (WithQueueType, WithQueueExpiry, WithDeliveryLimit, WithDeadLetterExchange; with WithOslo, OsloConfig) match it, or " + fix
	}
	return &mismatchError{what: strings.TrimPrefix(aerr.Reason, "PRECONDITION_FAILED - "), fix: fix, err: aerr}
}

// mismatchError is an ErrTopologyMismatch: what differs, how to mend it,
// and the broker's error.
type mismatchError struct {
	what, fix string
	err       *amqp.Error
}

func (e *mismatchError) Error() string {
	return fmt.Sprintf("%v: %s; %s", ErrTopologyMismatch, e.what, e.fix)
}

func (e *mismatchError) Unwrap() []error { return []error{ErrTopologyMismatch, e.err} }

// topicQueue is the queue of topic as cfg makes it.
func topicQueue(topic string, cfg *config) queueSpec {
	args := amqp.Table{}
	if cfg.queueType == QueueQuorum {
		args["x-queue-type"] = string(QueueQuorum)
		if cfg.deliveryLimit > 0 {
			args["x-delivery-limit"] = int64(cfg.deliveryLimit)
		}
	}
	if cfg.queueExpiry > 0 {
		args["x-expires"] = cfg.queueExpiry.Milliseconds()
	}
	if cfg.deadLetterExchange != "" {
		args["x-dead-letter-exchange"] = cfg.deadLetterExchange
	}
	return queueSpec{name: topic, durable: true, args: args}
}

// instanceQueue is a queue of one server's connection: name, with a
// random end, exclusive, so that it goes with the connection and a new
// connection need not wait for the broker to notice the old one is gone.
func instanceQueue(name, random string) queueSpec {
	return queueSpec{name: name + "_" + random, autoDelete: true, exclusive: true}
}

// replyQueue is a client's queue for replies: named by the broker,
// exclusive to the connection, as its replies cannot outlive it.
var replyQueue = queueSpec{autoDelete: true, exclusive: true}
