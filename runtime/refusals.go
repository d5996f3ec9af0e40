package runtime

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
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
	user     string // the user the connection is, when it refused a user_id
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
	return &accessError{reason: e.Reason, exchange: quoted(e.Reason, "exchange '"), topic: quoted(e.Reason, "topic '"),
		user: lastQuoted(e.Reason, "authenticated user was '")}
}

// lastQuoted returns the text between after and the last quote in s, or
// "": a name at the end of the broker's words, which may hold quotes.
func lastQuoted(s, after string) string {
	_, rest, ok := strings.Cut(s, after)
	if !ok {
		return ""
	}
	if i := strings.LastIndexByte(rest, '\''); i >= 0 {
		return rest[:i]
	}
	return ""
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

// of returns the error of a request to topic on exchange that was waiting
// on the channel e closed: e itself when e is about that exchange (or
// names none: a user_id) and that topic (or names none), and otherwise
// ErrConnectionLost, saying why.
func (e *accessError) of(exchange, topic string) error {
	if e.about(exchange, topic) {
		return e
	}
	return fmt.Errorf("%w: the broker closed the channel over another request (%s)", ErrConnectionLost, e.reason)
}

// refusals is a client's memory of the broker's refusals of access: for
// refusalMemory after one, a request it covers fails with it, unsent,
// rather than close a channel, and the calls waiting there, again.
type refusals struct {
	learn func(user string) bool // takes the user the broker says the connection is; false if it cannot
	any   atomic.Bool            // by has entries: checks take no lock without
	mu    sync.Mutex
	by    map[[2]string]refusedAt // by exchange and topic, "" for every one
}

type refusedAt struct {
	err   *accessError
	until time.Time
}

// note remembers e, but for a user_id that learn corrects.
func (r *refusals) note(e *accessError) {
	if e.user != "" && r.learn != nil && r.learn(e.user) {
		return
	}
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
	r.any.Store(true)
}

// check returns the refusal, remembered, that covers a request to topic
// on exchange, or nil.
func (r *refusals) check(exchange, topic string) error {
	if !r.any.Load() {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.by) == 0 {
		r.any.Store(false)
		return nil
	}
	now := time.Now()
	for _, k := range [...][2]string{{exchange, topic}, {exchange, ""}, {"", ""}} {
		if m, ok := r.by[k]; ok && now.Before(m.until) {
			return m.err
		}
	}
	for k, m := range r.by { // none covers it: what is forgotten goes, and with the last, the lock
		if now.After(m.until) {
			delete(r.by, k)
		}
	}
	if len(r.by) == 0 {
		r.any.Store(false)
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

// about says whether e is about a request to topic on exchange: e names
// that exchange (or none: a user_id) and that topic (or none).
func (e *accessError) about(exchange, topic string) bool {
	return (e.exchange == "" || e.exchange == exchange) && (e.topic == "" || e.topic == topic)
}

// afterRefusal settles the requests published on k, which the broker
// closed over r: RabbitMQ routes a channel's publications in order, and
// drops those after the one it refuses. So a request r is about fails
// with r; one published before the first of those was taken, and waits
// for its reply; one after it was dropped, and goes again (a gather, which
// may have reached some servers, fails instead). When none that r is
// about is known (its caller gave up), what became of the rest is not
// known either: they fail with ErrConnectionLost.
func (c *Client) afterRefusal(k *channel, r *accessError) {
	k.pubMu.Lock() // every publication on k is over, and its requests marked
	defer k.pubMu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	first := uint64(math.MaxUint64)
	for _, p := range c.pending {
		if p.via.Load() == k && p.refusedBy(r) {
			first = min(first, p.seq.Load())
		}
	}
	refused, resent := 0, 0
	for id, p := range c.pending {
		if p.via.Load() != k {
			continue
		}
		var err error
		switch seq := p.seq.Load(); {
		case p.refusedBy(r):
			err = r
			refused++
		case first == math.MaxUint64:
			err = fmt.Errorf("%w: the broker closed the channel over another request (%s), and may have dropped this one", ErrConnectionLost, r.reason)
		case seq < first:
			continue // taken before the refusal: its reply comes
		case p.multi:
			err = fmt.Errorf("%w: the broker closed the channel over another request (%s) before it took this one", ErrConnectionLost, r.reason)
		default:
			err = errResend
			resent++
		}
		delete(c.pending, id)
		select {
		case p.result <- callResult{err: err}:
		default: // a gather whose buffer is full: it will see its deadline
		}
	}
	c.throttle.warn(c.cfg.logger, "amqprpc: the broker refused access, and closed the channel", "error", r, "refused", refused, "sent_again", resent)
}

// userID returns the user_id of s's requests: WithUserID's; else the user
// the broker said the client's connections are, once it refused another
// (learnUser); else s's login.
func (s *session) userID() string {
	if s.c.cfg.userID.set {
		return s.c.cfg.userID.v
	}
	if u := s.c.learned.Load(); u != nil {
		return *u
	}
	return s.login
}

// learnUser takes user, the name the broker says the client's connection
// logged in as when it refused the user_id of a request, for the requests
// after: a login whose name the broker does not take from the URL (an
// OAuth 2 token's subject, a backend that maps names) costs the requests
// of one round trip, not every one. What WithUserID says is not changed.
func (c *Client) learnUser(user string) bool {
	if c.cfg.userID.set {
		return false
	}
	if prev := c.learned.Swap(&user); prev == nil || *prev != user {
		c.cfg.logger.Warn("amqprpc: the broker knows this client's connections by another name than their login; their requests carry it from now on (WithUserID names it)", "user", user)
	}
	return true
}

// refusedBy reports whether r, a refusal of access, is about p: its
// request, or, for a stream, its last credit.
func (p *pending) refusedBy(r *accessError) bool {
	if r.about(p.exchange, p.key) {
		return true
	}
	key := p.creditKey.Load()
	return key != nil && r.about(p.exchange, *key)
}
