package runtime

import (
	"errors"
	"fmt"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqprpc/amqprpc/internal/amqpio"
	"github.com/amqprpc/amqprpc/internal/wire"
)

// Topology. Every queue amqprpc declares is durable or exclusive, and it
// uses no argument, and no global prefetch, that RabbitMQ 4.x denies by
// default, so that every RabbitMQ from 3.10 to 4.3 accepts it as it comes
// (docs/PROTOCOL.md, Topology; the protocols' topologies are in
// internal/wire).

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

// declaredQueue, when set (by tests), sees every queue amqprpc declares.
var declaredQueue func(wire.Queue)

// declareQueue declares q on ch; a queue the broker has with other
// properties or arguments is an ErrTopologyMismatch that says which.
func declareQueue(ch amqpio.Channel, q wire.Queue) (amqp.Queue, error) {
	if declaredQueue != nil {
		declaredQueue(q)
	}
	got, err := ch.QueueDeclare(q.Name, q.Durable, q.AutoDelete, q.Exclusive,
		false, // noWait
		q.Args)
	if err != nil {
		return got, declareError("queue", q.Name, err)
	}
	return got, nil
}

// declareExchange declares x on ch; one the broker has with other
// settings is an ErrTopologyMismatch.
func declareExchange(ch amqpio.Channel, x wire.Exchange) error {
	err := ch.ExchangeDeclare(x.Name, x.Kind, x.Durable, x.AutoDelete,
		false, // internal
		false, // noWait
		nil)
	if err != nil {
		return declareError("exchange", x.Name, err)
	}
	return nil
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
	if errors.As(err, &aerr) && aerr.Code == amqp.AccessRefused {
		return fmt.Errorf("amqprpc: declare %s %q: %w", kind, name, refusalOf(aerr))
	}
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

// declareShared makes sure that the broker has exchange x: declared with
// the settings x says, as declareExchange does, or, when the user may not
// declare it (the configure permission, which would let it delete the
// exchange too), as an operator or a server declared it before: a user
// that publishes to, or binds from, an exchange that is there needs no
// configure permission on it (docs/SECURITY.md). It runs on channels of
// its own, as a refusal closes the channel it happens on.
func declareShared(conn amqpio.Conn, x wire.Exchange) error {
	declared := func(declare func(amqpio.Channel) error) error {
		ch, err := conn.Channel()
		if err != nil {
			return fmt.Errorf("amqprpc: open channel: %w", err)
		}
		defer ch.Close()
		return declare(ch)
	}
	err := declared(func(ch amqpio.Channel) error { return declareExchange(ch, x) })
	if !errors.Is(err, ErrAccessRefused) {
		return err
	}
	there := declared(func(ch amqpio.Channel) error {
		return ch.ExchangeDeclarePassive(x.Name, x.Kind, x.Durable, x.AutoDelete,
			false, // internal
			false, // noWait
			nil)
	})
	if there != nil { // not there, and this user may not declare it: the refusal says why
		return err
	}
	return nil
}
