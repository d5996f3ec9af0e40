package wire

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// RabbitMQ's direct reply-to: a caller that consumes the pseudo-queue
// amq.rabbitmq.reply-to names, as its reply_to, an address
// amq.rabbitmq.reply-to.<pid>.<key> that the broker made for its channel:
// <pid> is the base64 of the channel's Erlang pid, in the external term
// format, whose node is the broker node's name, or, since RabbitMQ 3.10,
// "reply@<a hash of it>"; <key> is the base64 of a random key. A reply to
// an address whose <pid> names no node of the cluster makes the broker
// close the publishing connection (541 INTERNAL_ERROR), whatever else that
// connection carries; one whose channel is gone is dropped. So only the
// broker can judge an address, and DirectNode checks what can be checked
// without it.

// DirectReplyTo is the prefix of RabbitMQ's direct reply-to addresses.
const DirectReplyTo = "amq.rabbitmq.reply-to"

// IsDirectReplyTo reports whether queue is a direct reply-to address.
func IsDirectReplyTo(queue string) bool { return strings.HasPrefix(queue, DirectReplyTo) }

// errNotDirect says why an address cannot be a direct reply-to address
// that a broker made.
var errNotDirect = errors.New("not a direct reply-to address a broker makes: amq.rabbitmq.reply-to.<base64 Erlang pid>.<base64 key>")

// DirectNode returns the node that direct reply-to address addr names, as
// the broker encoded it: the node of its pid, and the Erlang tags of the
// pid and of its node's atom (e.g. "reply@9248884/Xv"). The broker routes
// a reply by it, and refuses one whose node it does not know, or whose
// node it knows in another encoding (RabbitMQ 3.10 refuses the tags "Xd",
// "Xs" and "gd" of a node whose replies it takes as "Xv"); a reply to a
// node it took a reply to, in the same encoding, whatever the rest of the
// address, it takes. An address that cannot be one the broker made is an
// error.
func DirectNode(addr string) (string, error) {
	suffix, ok := strings.CutPrefix(addr, DirectReplyTo+".")
	pid, key, ok2 := strings.Cut(suffix, ".")
	if !ok || !ok2 || key == "" {
		return "", errNotDirect
	}
	if _, err := base64.StdEncoding.DecodeString(key); err != nil {
		return "", errNotDirect
	}
	term, err := base64.StdEncoding.DecodeString(pid)
	if err != nil {
		return "", errNotDirect
	}
	node, err := pidNode(term)
	if err != nil {
		return "", fmt.Errorf("%w: %v", errNotDirect, err)
	}
	return fmt.Sprintf("%s/%c%c", node, term[1], term[2]), nil
}

// pidNode returns the node of term, an Erlang pid in the external term
// format: 131, then PID_EXT ('g') or NEW_PID_EXT ('X'), an atom (its
// node), and the pid's numbers.
func pidNode(term []byte) (string, error) {
	if len(term) < 3 || term[0] != 131 {
		return "", errors.New("not an Erlang term")
	}
	var numbers int
	switch term[1] {
	case 'g': // PID_EXT: id, serial, creation (1 byte)
		numbers = 9
	case 'X': // NEW_PID_EXT: id, serial, creation (4 bytes)
		numbers = 12
	default:
		return "", errors.New("not a pid")
	}
	rest := term[2:]
	var n int
	switch rest[0] {
	case 'd', 'v': // ATOM_EXT, ATOM_UTF8_EXT: 2-byte length
		if len(rest) < 3 {
			return "", errors.New("truncated")
		}
		n, rest = int(rest[1])<<8|int(rest[2]), rest[3:]
	case 's', 'w': // SMALL_ATOM_EXT, SMALL_ATOM_UTF8_EXT: 1-byte length
		if len(rest) < 2 {
			return "", errors.New("truncated")
		}
		n, rest = int(rest[1]), rest[2:]
	default:
		return "", errors.New("a pid whose node is not an atom")
	}
	if n == 0 || len(rest) != n+numbers {
		return "", errors.New("truncated, or more than a pid")
	}
	return string(rest[:n]), nil
}
