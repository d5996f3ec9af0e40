package runtime

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
)

// serverSession is one connection of a Server and what it consumes on it.
type serverSession struct {
	conn    *amqp.Connection
	ch      *amqp.Channel // consumes the queues, publishes replies
	queues  queues
	shared  queueSpec             // the topic's queue, as declared
	workers atomic.Int32          // started: at most the prefetch count, and one per queue at least
	acker   *acker                // acknowledges deliveries, tracking them with WithAckAfterReply
	replier *batcher[queuedReply] // publishes replies to callers that accept them batched; run owns it
	extra   atomic.Int32          // goroutines serving requests of a batch beside its worker
	closed  chan *amqp.Error      // the channel's, or the connection's, end

	classicMu sync.Mutex
	classicCh *amqp.Channel // for replies to classic (msg_id only) requests
}

// queues are the deliveries of a server's three consumers.
type queues struct {
	shared <-chan amqp.Delivery // the topic's queue, shared by its servers
	own    <-chan amqp.Delivery // topic.name: requests for this server alone
	fanout <-chan amqp.Delivery // this server's queue on the fanout exchange
	tags   []string             // consumer tags
}

// pool is the workers of one queue.
type pool struct {
	deliveries <-chan amqp.Delivery
	fanout     bool         // the queue of requests sent to every server
	idle       atomic.Int32 // workers waiting for a delivery
}

// install makes sess the server's session, unless Shutdown has begun.
func (s *Server) install(sess *serverSession) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return false
	}
	s.sess = sess
	return true
}

// reconnect opens a new session, backing off between attempts. It
// returns ErrServerClosed once Shutdown has begun, and gives up on an
// ErrTopologyMismatch, which no attempt can mend.
func (s *Server) reconnect() (*serverSession, error) {
	mismatch := func(err error) bool { return errors.Is(err, ErrTopologyMismatch) }
	sess, err := reconnect(&s.cfg, s.log, s.quit, &s.stats.reconnects, s.openSession, mismatch)
	switch {
	case err != nil:
		s.log.Error("amqprpc: cannot serve", "error", err)
		return nil, err
	case sess == nil:
		return nil, ErrServerClosed
	}
	return sess, nil
}

// openSession connects, declares the topology and starts consuming the
// server's queues.
func (s *Server) openSession() (*serverSession, error) {
	conn, err := s.connector.connect()
	if err != nil {
		return nil, err
	}
	sess := &serverSession{conn: conn}
	if err := s.consume(sess); err != nil {
		conn.Close()
		return nil, err
	}
	return sess, nil
}

func (s *Server) consume(sess *serverSession) error {
	ch, err := sess.conn.Channel()
	if err != nil {
		return fmt.Errorf("amqprpc: open channel: %w", err)
	}
	sess.ch = ch
	sess.closed = ch.NotifyClose(make(chan *amqp.Error, 1))
	if s.cfg.replyConfirms {
		if err := ch.Confirm(false); err != nil { // noWait
			return fmt.Errorf("amqprpc: confirm mode: %w", err)
		}
	}
	requests, everyServer := s.proto.requestExchange(), s.proto.fanoutExchange(s.topic)
	for _, x := range []exchangeSpec{requests, everyServer} {
		if err := declareExchange(ch, x); err != nil {
			return err
		}
	}
	shared, own, fanout := s.proto.serverQueues(s.topic, s.server, strings.ReplaceAll(uuid.NewString(), "-", ""))
	sess.shared = shared
	for _, d := range []struct {
		queue         queueSpec
		exchange, key string
	}{
		{shared, requests.name, s.topic},
		{own, requests.name, s.topic + "." + s.server},
		{fanout, everyServer.name, s.topic},
	} {
		if _, err := declareQueue(ch, d.queue); err != nil {
			return err
		}
		if err := ch.QueueBind(d.queue.name, d.key, d.exchange, false, nil); err != nil { // noWait
			return fmt.Errorf("amqprpc: bind queue %q to exchange %q: %w", d.queue.name, d.exchange, err)
		}
	}
	if err := ch.Qos(s.cfg.prefetch, 0, false); err != nil { // prefetch size, global
		return fmt.Errorf("amqprpc: set prefetch: %w", err)
	}
	sess.acker = newAcker(ch, s.cfg.prefetch)
	q := &sess.queues
	for _, c := range []struct {
		queue string
		to    *<-chan amqp.Delivery
	}{{shared.name, &q.shared}, {own.name, &q.own}, {fanout.name, &q.fanout}} {
		tag := "amqprpc-" + uuid.NewString()
		// Acknowledged by the server, even without WithAckAfterReply, so
		// that the prefetch count bounds what the broker pushes.
		deliveries, err := ch.Consume(c.queue, tag,
			false, // autoAck
			false, // exclusive
			false, // noLocal
			false, // noWait
			nil)
		if err != nil {
			return fmt.Errorf("amqprpc: consume queue %q: %w", c.queue, err)
		}
		*c.to = deliveries
		q.tags = append(q.tags, tag)
	}
	return nil
}
