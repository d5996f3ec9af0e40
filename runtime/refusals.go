package runtime

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// refusalMemory is how long a client fails requests, unsent, to an
// exchange and topic the broker refused it access to (ErrAccessRefused).
const refusalMemory = time.Second

// accessError is the broker's refusal of access, which closed a channel:
// 403 ACCESS_REFUSED, or 406 PRECONDITION_FAILED over a user_id.
type accessError struct {
	reason   string // the broker's words
	exchange string // the exchange it names, if it names one
	topic    string // the topic (routing key) it names, if it names one
}

func (e *accessError) Error() string     { return "amqprpc: the broker refused access: " + e.reason }
func (e *accessError) Is(err error) bool { return err == ErrAccessRefused }

// refusalOf returns the refusal of access that e, a channel's end, is, or
// nil. RabbitMQ's words: "access to topic 'calc' in exchange 'amqprpc' in
// vhost '/' refused for user 'bob'", "access to exchange 'amqprpc' in
// vhost '/' refused for user 'bob'", "user_id property set to 'alice' but
// authenticated user was 'bob'".
func refusalOf(e *amqp.Error) *accessError {
	if e == nil || !(e.Code == amqp.AccessRefused || e.Code == amqp.PreconditionFailed && strings.Contains(e.Reason, "user_id")) {
		return nil
	}
	return &accessError{reason: e.Reason, exchange: quoted(e.Reason, "exchange '"), topic: quoted(e.Reason, "topic '")}
}

// quoted returns the text between after and the next quote in s, or "".
func quoted(s, after string) string {
	_, rest, ok := strings.Cut(s, after)
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, "'")
	return name
}

// of returns the error of a call to topic that was waiting on the channel
// e closed: e itself when e is about that topic, or about every
// publication (a user_id, an exchange), and otherwise ErrConnectionLost,
// saying why.
func (e *accessError) of(topic string) error {
	if e.topic == "" || e.topic == topic {
		return e
	}
	return fmt.Errorf("%w: the broker closed the channel over another request (%s)", ErrConnectionLost, e.reason)
}

// refusals is a client's memory of the broker's refusals of access: for
// refusalMemory after one, a request it covers fails with it, unsent,
// rather than close a channel, and the calls waiting there, again.
type refusals struct {
	mu sync.Mutex
	by map[[2]string]refusedAt // by exchange and topic, "" for every one
}

type refusedAt struct {
	err   *accessError
	until time.Time
}

// note remembers e.
func (r *refusals) note(e *accessError) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	for k, m := range r.by { // what is forgotten goes: the map holds what was refused in the last second
		if now.After(m.until) {
			delete(r.by, k)
		}
	}
	if r.by == nil {
		r.by = make(map[[2]string]refusedAt)
	}
	r.by[[2]string{e.exchange, e.topic}] = refusedAt{e, now.Add(refusalMemory)}
}

// check returns the refusal, remembered, that covers a request to topic
// on exchange, or nil.
func (r *refusals) check(exchange, topic string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.by) == 0 {
		return nil
	}
	now := time.Now()
	for _, k := range [...][2]string{{exchange, topic}, {exchange, ""}, {"", ""}} {
		if m, ok := r.by[k]; ok && now.Before(m.until) {
			return m.err
		}
	}
	return nil
}

// refused returns err, or, when it is the broker's refusal of access that
// does not say so yet (a consume, a bind), err as ErrAccessRefused.
func refused(err error) error {
	var aerr *amqp.Error
	if errors.Is(err, ErrAccessRefused) || !errors.As(err, &aerr) || refusalOf(aerr) == nil {
		return err
	}
	return fmt.Errorf("%w: %w", ErrAccessRefused, err)
}
