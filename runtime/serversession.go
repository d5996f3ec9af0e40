package runtime

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqprpc/amqprpc/internal/amqpio"
	"github.com/amqprpc/amqprpc/internal/wire"
)

// serverSession is one connection of a Server and what it runs on it: a
// channel that consumes the server's three queues, acknowledges what they
// deliver and publishes the replies to callers' queues; the workers of
// each queue, and the helpers that serve requests of a batch beside them
// (help); the goroutine that consumes again a queue whose consumer the
// broker cancelled. A lost session is never reused: the server opens a
// new one.
type serverSession struct {
	s       *Server
	id      uint64 // from 1, one more for each session of the server
	conn    amqpio.Conn
	ch      amqpio.Channel
	closed  chan *amqp.Error // the channel's, or the connection's, end
	cancels chan string      // tags of the consumers the broker cancelled
	done    chan struct{}    // closed when the session ends
	acker   *amqpio.Acker
	replies *amqpio.Batcher[queuedReply] // replies to callers that accept them batched
	shared  wire.Queue                   // the topic's queue, as declared
	extra   atomic.Int32                 // requests of a batch served beside its worker
	helpers chan *request                // requests of a batch handed to an idle helper
	helped  atomic.Int32                 // helpers alive
	watcher sync.WaitGroup               // watch
	subs    []*subscription              // the first subscriptions, whose workers start

	subMu     sync.Mutex
	consumers []*consumer
	stopping  bool // Shutdown cancelled the consumers: none starts again

	mu   sync.Mutex
	live map[uint64]*delivery // received and not settled, by delivery tag
	gone bool                 // the channel is gone: every delivery is lost

	classicMu sync.Mutex
	classic   classicChannels

	streams *streamPort // nil when the server has no stream methods
}

// openSession connects, declares the topology and starts consuming the
// server's queues.
func (s *Server) openSession() (*serverSession, error) {
	conn, err := s.connect(s.ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.sessions++
	id := s.sessions
	s.mu.Unlock()
	if id == 1 { // at start, before this server's own queue is bound
		if err := s.checkName(conn); err != nil {
			conn.Close()
			return nil, err
		}
	}
	sess := &serverSession{s: s, id: id, conn: conn, done: make(chan struct{}), live: make(map[uint64]*delivery),
		helpers: make(chan *request)}
	subs, err := sess.open()
	if err != nil {
		conn.Close()
		return nil, refused(err)
	}
	sess.replies = amqpio.NewBatcher(0, sess.publishReplies)
	sess.subs = subs
	return sess, nil
}

// open opens the session's channel, declares the exchanges and the queues,
// and consumes them.
func (sess *serverSession) open() ([]*subscription, error) {
	s := sess.s
	ch, err := sess.conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("amqprpc: open channel: %w", err)
	}
	sess.ch = ch
	sess.closed = ch.NotifyClose(make(chan *amqp.Error, 1))
	sess.cancels = ch.NotifyCancel(make(chan string, 3))
	if s.cfg.replyConfirms {
		if err := ch.Confirm(false); err != nil { // noWait
			return nil, fmt.Errorf("amqprpc: confirm mode: %w", err)
		}
	}
	requests, everyServer := s.proto.RequestExchange(), s.proto.FanoutExchange(s.topic)
	for _, x := range []wire.Exchange{requests, everyServer} {
		if err := declareShared(sess.conn, x); err != nil {
			return nil, err
		}
	}
	shared, own, fanout := s.proto.ServerQueues(s.topic, s.server, strings.ReplaceAll(uuid.NewString(), "-", ""))
	sess.shared = shared
	sess.consumers = []*consumer{
		{queue: shared, exchange: requests.Name, key: s.topic},
		{queue: own, exchange: requests.Name, key: s.topic + "." + s.server},
		{queue: fanout, exchange: everyServer.Name, key: s.topic, fanout: true},
	}
	if err := ch.Qos(s.cfg.prefetch, 0, false); err != nil { // prefetch size, global
		return nil, fmt.Errorf("amqprpc: set prefetch: %w", err)
	}
	sess.acker = amqpio.NewAcker(ch, s.cfg.prefetch)
	var subs []*subscription
	for _, c := range sess.consumers {
		if err := declareAndBind(ch, c); err != nil {
			return nil, err
		}
		sub, err := sess.consume(c)
		if err != nil {
			return nil, err
		}
		subs = append(subs, sub)
	}
	if s.services.streams {
		if err := sess.openStreams(); err != nil {
			return nil, err
		}
	}
	return subs, nil
}

// start starts the session's workers, one for each of its queues to
// begin with, the batcher of its replies, and the watcher of its
// consumers.
func (sess *serverSession) start() {
	sess.replies.Start()
	for _, sub := range sess.subs {
		sess.grow(sub)
	}
	sess.watcher.Add(1)
	go sess.watch()
}

// grow starts a worker of sub, unless it has the prefetch count of them:
// as many as the broker delivers it at once, at least once.
func (sess *serverSession) grow(sub *subscription) {
	if sub.workers.Add(1) > int32(sess.s.cfg.prefetch) {
		sub.workers.Add(-1)
		return
	}
	sess.s.handlers.Add(1)
	go sess.s.work(sess, sub)
}

// shutdown ends sess gracefully: its consumers are cancelled, so that the
// broker delivers no more (the workers give back what it delivered
// already); its handlers finish, their replies go out and their requests
// are acknowledged; then the connection closes. If Shutdown gives up first
// and closes the connection, what is unacknowledged goes back to the queue.
func (sess *serverSession) shutdown() {
	s := sess.s
	sess.subMu.Lock()
	sess.stopping = true
	tags := make([]string, len(sess.consumers))
	for i, c := range sess.consumers {
		tags[i] = c.tag
	}
	sess.subMu.Unlock()
	sess.watcher.Wait() // no worker starts from here on (it sees s.quit)
	for _, tag := range tags {
		if err := sess.ch.Cancel(tag, false); err != nil { // noWait
			s.log.Warn("amqprpc: cancel consumer", "error", err)
		}
	}
	drained := make(chan struct{})
	go func() { // owned here: ends when the handlers have, and their replies are out, or at end
		s.handlers.Wait()
		sess.replies.Drain()
		close(drained)
	}()
	select {
	case <-drained:
		if err := sess.acker.Flush(); err != nil { // the acks of the last requests, before the connection goes
			s.log.Warn("amqprpc: acknowledge the last requests", "error", err)
		}
	case <-sess.closed: // Shutdown gave up waiting and closed the connection
	}
	sess.end()
	<-drained
}

// end ends sess: its connection closes, and with it its consumers,
// workers and helpers; every delivery not settled is lost, and goes back to its queue;
// the replies still queued do not go out. It returns the deliveries that
// were in flight, and waits for the watcher.
func (sess *serverSession) end() []*amqp.Delivery {
	close(sess.done)
	sess.conn.Close()
	sess.acker.Stop()
	held := sess.lostWith()
	for _, q := range sess.replies.Stop() {
		sess.s.replied(q.r, unpublished)
	}
	if sess.streams != nil {
		sess.streams.readers.Wait()
	}
	sess.watcher.Wait()
	return held
}

// publish publishes pub, a reply or several, on the session's channel to
// the caller's queue key through the default exchange.
func (sess *serverSession) publish(ctx context.Context, key string, pub amqp.Publishing) sent {
	return publish(ctx, sess.ch, "", key, pub)
}
