package runtime

import (
	amqp "github.com/rabbitmq/amqp091-go"
)

// queuedReply is a reply on its way to a caller that accepts its replies
// batched, with what settling its request needs.
type queuedReply struct {
	reply batchedReply
	t     *taken
	req   *inRequest
}

// newReplier returns the batcher of a server session's replies to callers
// that accept them batched (batch_replies): encode encodes one reply or
// several to one reply queue; publish publishes them there and reports
// whether they went out; settle settles a reply's request once that is
// known, so that each request is still acknowledged after its reply.
func newReplier(encode func(*amqp.Publishing, []batchedReply) error, publish func(key string, pub amqp.Publishing) bool, settle func(*queuedReply, outcome)) *batcher[queuedReply] {
	// The batcher publishes one key's replies at a time: these are the
	// scratch of each publish.
	var replies []batchedReply
	var pub amqp.Publishing
	return newBatcher(func(key string, qs []queuedReply) {
		replies = replies[:0]
		for _, q := range qs {
			replies = append(replies, q.reply)
		}
		pub = amqp.Publishing{}
		o := retry
		if encode(&pub, replies) == nil && publish(key, pub) {
			o = answered
		}
		clear(replies)
		pub = amqp.Publishing{}
		for i := range qs {
			settle(&qs[i], o)
		}
	})
}
