package runtime

import "sync/atomic"

// ServerStats counts what a server did besides running methods: the
// requests it did not serve as they asked, the broker's redeliveries, its
// reconnections and the batches it read. Counts are since NewServer and
// only grow; otelamqprpc.ObserveServer exports them as metrics.
type ServerStats struct {
	// Malformed is the requests answered with a failure (CodeMalformed,
	// CodeResourceExhausted) without running, then rejected without
	// requeue: not JSON, no method, over the body limit, headers no AMQP
	// client could read.
	Malformed uint64
	// Unanswerable is the requests rejected without requeue, unanswered,
	// because their reply could not go where they asked
	// (docs/PROTOCOL.md, Replies).
	Unanswerable uint64
	// Quarantined is the requests rejected without requeue when delivered
	// again after two strikes: each a lost connection they were in flight
	// at, or a reply of theirs that the broker refused (a nack).
	Quarantined uint64
	// Expired is the requests dropped unrun because their caller's
	// deadline had passed when the server took them. One alone in its
	// message, served at least once, is rejected: the broker dead-letters
	// it where the queue has a dead-letter exchange.
	Expired uint64
	// Redelivered is the deliveries the broker marked as delivered before
	// (to this server or another): their requests had been in flight at a
	// lost connection, a requeue or a shutdown.
	Redelivered uint64
	// Undelivered is the replies to direct reply-to addresses that could
	// not go out before their caller's deadline (the server's connection
	// for them could not be had): their requests ran, and were
	// acknowledged.
	Undelivered uint64
	// Reconnects is how many times the server connected again after
	// losing its connection.
	Reconnects uint64
	// Streams is the streams the server started, and StreamItems the
	// items it sent in them.
	Streams, StreamItems uint64
	// Cancelled is how many times the broker cancelled one of the server's
	// consumers (its queue was deleted, or lost with its node), counted as
	// the server learns of it; the server then consumes the queue again.
	Cancelled uint64
	// Batches is the deliveries that held several requests, and
	// BatchedRequests the requests in them: BatchedRequests / Batches is
	// their mean size.
	Batches, BatchedRequests uint64
	// Unauthenticated is the requests refused, unrun, because their
	// caller was anonymous (WithAnonymousCallers, WithAuthorization), and
	// Denied those refused because the policy does not let their verified
	// caller call their method (WithAuthorization).
	Unauthenticated, Denied uint64
}

type serverStats struct {
	malformed, unanswerable, quarantined, expired, redelivered, undelivered, reconnects, cancelled, batches, batched atomic.Uint64
	streams, streamItems                                                                                             atomic.Uint64
}

// Stats returns the server's counts.
func (s *Server) Stats() ServerStats {
	return ServerStats{
		Malformed:       s.stats.malformed.Load(),
		Unanswerable:    s.stats.unanswerable.Load(),
		Quarantined:     s.stats.quarantined.Load(),
		Expired:         s.stats.expired.Load(),
		Redelivered:     s.stats.redelivered.Load(),
		Undelivered:     s.stats.undelivered.Load(),
		Reconnects:      s.stats.reconnects.Load(),
		Cancelled:       s.stats.cancelled.Load(),
		Batches:         s.stats.batches.Load(),
		BatchedRequests: s.stats.batched.Load(),
		Unauthenticated: s.gate.unauthenticated.Load(),
		Denied:          s.gate.denied.Load(),
		Streams:         s.stats.streams.Load(),
		StreamItems:     s.stats.streamItems.Load(),
	}
}

// ClientStats counts what a client did besides sending each request:
// its reconnections and the batches it sent. Counts are since Dial and
// only grow; otelamqprpc.ObserveClient exports them as metrics.
type ClientStats struct {
	// Reconnects is how many times the client connected again after
	// losing its connection.
	Reconnects uint64
	// Batches is the messages that carried several calls, and
	// BatchedCalls the calls in them: BatchedCalls / Batches is their mean
	// size.
	Batches, BatchedCalls uint64
}

type clientStats struct {
	reconnects, batches, batched atomic.Uint64
}

// Stats returns the client's counts.
func (c *Client) Stats() ClientStats {
	return ClientStats{
		Reconnects:   c.stats.reconnects.Load(),
		Batches:      c.stats.batches.Load(),
		BatchedCalls: c.stats.batched.Load(),
	}
}
