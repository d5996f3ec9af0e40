package runtime

import (
	"context"
	"fmt"

	"github.com/amqprpc/amqprpc/internal/wire"
)

// Identity is who sent a request, as the server that runs it knows: the
// broker user the request was published as, and, in oslo mode, the
// OpenStack identity its request context claims. Caller returns it.
//
// What the broker guarantees (docs/SECURITY.md has the whole table): an
// amqprpc client sets each request's AMQP user_id property to the user
// its connection logged in as (WithUserID), and RabbitMQ refuses a
// message whose user_id is not the publishing connection's user, closing
// the publisher's channel; so a request that arrives with a user_id was
// published by a connection of that user. Two exceptions are the
// operator's to control: a user with the impersonator tag may publish with
// any user_id, and a plugin that moves messages between brokers
// (federation with trust-user-id, a shovel) carries the other broker's
// word. A request without user_id (a foreign peer, oslo.messaging's
// Python clients, a client told WithUserID("")) is anonymous.
type Identity struct {
	// User is the broker user that published the request: its user_id
	// property; "" when it carried none.
	User string
	// Verified says that User is the broker's word, not the caller's: it
	// is set for every request with a user_id that came through a broker,
	// which checked it, and, in a Local, for the user its WithUserID
	// names, as nobody else publishes there.
	Verified bool
	// OsloUser and OsloProject are the user_id and project_id of an
	// oslo.messaging request context (user and tenant where an older
	// caller sends those): the Keystone identity an OpenStack service
	// checks, as the caller wrote it. The broker does not check them;
	// they are as good as the caller's word and the token beside them.
	OsloUser, OsloProject string
}

// Anonymous says that the request carried no user the broker checked.
func (id Identity) Anonymous() bool { return !id.Verified }

func (id Identity) String() string {
	who := "anonymous"
	if id.Verified {
		who = fmt.Sprintf("user %q", id.User)
	}
	if id.OsloUser != "" || id.OsloProject != "" { // the caller's words: clipped
		who += fmt.Sprintf(" (oslo user %q, project %q)", clipWord(id.OsloUser), clipWord(id.OsloProject))
	}
	return who
}

// clipWord returns s, cut to 64 bytes: a caller's word in a log line.
func clipWord(s string) string {
	if len(s) <= 64 {
		return s
	}
	return s[:64] + "..."
}

type callerKey struct{}

// Caller returns, in a method's context (or a server interceptor's), who
// sent its request; the zero Identity, anonymous, for a request that said
// nothing of it, and outside a server.
func Caller(ctx context.Context) Identity {
	id, _ := ctx.Value(callerKey{}).(*Identity)
	if id == nil {
		return Identity{}
	}
	return *id
}

// identityOf returns who sent req.
func identityOf(req *wire.In) Identity {
	id := Identity{User: req.User, Verified: req.User != ""}
	if req.Context != nil {
		id.OsloUser = contextString(req.Context, "user_id", "user")
		id.OsloProject = contextString(req.Context, "project_id", "tenant")
	}
	return id
}

// contextString returns the first of keys that rc has as a string.
func contextString(rc map[string]any, keys ...string) string {
	for _, k := range keys {
		if s, ok := rc[k].(string); ok && s != "" {
			return s
		}
	}
	return ""
}
