package runtime

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// TestRefusalOf: the broker's words (as RabbitMQ 3.10 writes them, seen in
// caller_test.go's runs) say which requests a refusal is about; the others
// waiting on the channel it closed lost their connection.
func TestRefusalOf(t *testing.T) {
	topicRefused := &amqp.Error{Code: amqp.AccessRefused, Reason: "ACCESS_REFUSED - access to topic 'calc' in exchange 'amqprpc' in vhost '/' refused for user 'bob'"}
	exchangeRefused := &amqp.Error{Code: amqp.AccessRefused, Reason: "ACCESS_REFUSED - access to exchange 'amqprpc.fanout.calc' in vhost '/' refused for user 'bob'"}
	userIDRefused := &amqp.Error{Code: amqp.PreconditionFailed, Reason: "PRECONDITION_FAILED - user_id property set to 'alice' but authenticated user was 'bob'"}
	for _, tc := range []struct {
		err             *amqp.Error
		exchange, topic string
		refused         bool // ErrAccessRefused, else ErrConnectionLost
	}{
		{topicRefused, "amqprpc", "calc", true},
		{topicRefused, "amqprpc", "calc.s1", false},
		{topicRefused, "amqprpc.fanout.calc", "calc", false},
		{exchangeRefused, "amqprpc.fanout.calc", "calc", true},
		{exchangeRefused, "amqprpc", "calc", false},
		{userIDRefused, "amqprpc", "anything", true},
		{userIDRefused, "other", "", true},
	} {
		r := refusalOf(tc.err)
		if r == nil {
			t.Fatalf("refusalOf(%v) = nil", tc.err)
		}
		err := r.of(tc.exchange, tc.topic)
		if errors.Is(err, ErrAccessRefused) != tc.refused || !tc.refused && !errors.Is(err, ErrConnectionLost) {
			t.Errorf("%q, a request to %s/%s: %v; want refused %v", tc.err.Reason, tc.exchange, tc.topic, err, tc.refused)
		}
	}
	for _, e := range []*amqp.Error{nil, {Code: amqp.PreconditionFailed, Reason: "PRECONDITION_FAILED - inequivalent arg 'durable'"}, {Code: amqp.NotFound, Reason: "NOT_FOUND - no exchange"}} {
		if r := refusalOf(e); r != nil {
			t.Errorf("refusalOf(%v) = %v; want nil", e, r)
		}
	}
}

// TestLearnUser: when the broker refuses a request's user_id and says who
// the connection is (a login it does not name by the URL's user: an OAuth
// 2 token's subject), the client's later requests carry that name, and
// the refusal is not remembered against them; a user_id that WithUserID
// gave is the caller's to mend: it stays, and the refusal is remembered.
func TestLearnUser(t *testing.T) {
	userIDRefused := &amqp.Error{Code: amqp.PreconditionFailed, Reason: "PRECONDITION_FAILED - user_id property set to 'alice' but authenticated user was 'sub-1234'"}
	if got := refusalOf(&amqp.Error{Code: amqp.PreconditionFailed, Reason: "PRECONDITION_FAILED - user_id property set to 'a' but authenticated user was 'o'brien'"}).user; got != "o'brien" {
		t.Errorf("a user whose name has a quote: %q", got)
	}
	for _, tc := range []struct {
		opts       []ClientOption
		want       string
		remembered bool
	}{
		{nil, "sub-1234", false},
		{[]ClientOption{WithUserID("alice")}, "alice", true},
	} {
		var logs strings.Builder
		c := &Client{cfg: clientConfig(append(tc.opts, WithLogger(slog.New(slog.NewTextHandler(&logs, nil)))))}
		c.refused.learn = c.learnUser
		s := &session{c: c, login: "alice"}
		if got := s.userID(); got != "alice" {
			t.Fatalf("userID before the refusal = %q; want the login", got)
		}
		c.refused.note(refusalOf(userIDRefused))
		if got := s.userID(); got != tc.want {
			t.Errorf("options %d: userID after the refusal = %q; want %q", len(tc.opts), got, tc.want)
		}
		if err := c.refused.check("amqprpc", "calc"); (err != nil) != tc.remembered {
			t.Errorf("options %d: a request after the refusal: %v; want remembered %v", len(tc.opts), err, tc.remembered)
		}
		if logged := strings.Contains(logs.String(), "user=sub-1234"); logged == tc.remembered {
			t.Errorf("options %d: logged %q; want a line naming the user learnt: %v", len(tc.opts), logs.String(), !tc.remembered)
		}
	}
}
