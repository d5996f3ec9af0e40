package runtime

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/amqprpc/amqprpc/internal/amqpio"
	"github.com/amqprpc/amqprpc/internal/wire"
)

// session is one connection of a Client and what the client built on it.
// A lost session is never reused: the client opens a new one.
type session struct {
	c       *Client
	conn    amqpio.Conn
	calls   atomic.Pointer[channel] // requests that want replies: open, or opened again (callsChannel)
	inbox   amqpio.Channel          // consumes the reply queue; it publishes nothing, so no refusal closes it
	replyTo string                  // the reply queue: exclusive to this connection
	login   string                  // the user its connection logged in as, when its mechanism says
	// requests publishes calls, batched, on calls (or on bounded, to a
	// topic whose queue has a limit); nil when calls are not batched.
	requests *amqpio.Batcher[*outgoing]

	castMu  sync.Mutex
	casts   *channel        // casts and declarations; opened on demand, reopened once closed
	bounded *channel        // calls to topics whose queue has a limit, confirmed; opened on demand, as casts
	fanouts map[string]bool // fanout exchanges declared on this connection

	blockMu sync.Mutex
	blocked chan struct{} // while the broker blocks publishers: closed when it stops
	reason  string        // why it blocks

	lost chan struct{} // closed when the connection, or the inbox, is gone

	taken []*pending // publishCalls' scratch: the pending requests of a batch

	whyMu sync.Mutex
	why   map[string]unrouted // by routing key: why requests to it came back

	// unconfirmed are the messages of calls the batcher published since
	// watchConfirms last looked, in order; published wakes it, and stop
	// closes it.
	pubMu       sync.Mutex
	unconfirmed []publication
	published   chan struct{}
	pubStopped  bool
}

// publication is a message of calls, batched or alone, published in
// confirm mode: each call's id and pending request, and the broker's
// confirmation.
type publication struct {
	ch      *channel // the channel it went on
	confirm amqpio.Confirmation
	calls   []callOf
}

// callOf is a call of a publication.
type callOf struct {
	id string
	p  *pending
}

// channel is an AMQP channel that requests are published on, in confirm
// mode unless the client's profile says otherwise. Its returns are read
// unbuffered: the broker returns an unroutable message before it confirms
// it, so when a confirm arrives its return, if any, has been received;
// flush waits until that has been handled.
type channel struct {
	ch    amqpio.Channel
	flush func()

	// pubMu orders its publications: each request published there gets
	// its place (pending.seq), so that, when the broker refuses one and
	// closes the channel, what went before it is told from what went after.
	pubMu sync.Mutex
	seq   uint64

	closeMu sync.Mutex
	closed  chan *amqp.Error // the broker's reason, when it closes the channel
	why     *amqp.Error      // that reason, once read
	refused *refusals        // the client's memory of refusals
}

// refusal returns the broker's refusal of access that closed k (see
// ErrAccessRefused), or nil when k is open or closed for another reason.
func (k *channel) refusal() *accessError {
	k.closeMu.Lock()
	defer k.closeMu.Unlock()
	if k.why == nil && k.closed != nil {
		select {
		case k.why = <-k.closed: // sent before the channel's deliveries and confirms end
			if r := refusalOf(k.why); r != nil {
				k.refused.note(r)
			}
		default:
		}
	}
	return refusalOf(k.why)
}

// openSession connects and sets up a session: the exchange, the reply
// queue and its consumer on a channel of its own (the inbox), the calls
// channel, and the goroutines that read them. Replies come to the inbox,
// which publishes nothing: a publication the broker refuses closes the
// channel it went on, and the calls waiting for replies on others, or
// for replies to what that channel published before, go on waiting.
func (c *Client) openSession() (*session, error) {
	conn, err := c.connector.Connect(c.ctx)
	if err != nil {
		return nil, err
	}
	s := &session{c: c, conn: conn, login: conn.User(), lost: make(chan struct{}), fanouts: make(map[string]bool)}
	if err := s.open(); err != nil {
		conn.Close()
		return nil, err
	}
	return s, nil
}

func (s *session) open() error {
	if err := declareShared(s.conn, s.c.proto.RequestExchange()); err != nil {
		return err
	}
	inbox, err := s.conn.Channel()
	if err != nil {
		return fmt.Errorf("amqprpc: open channel: %w", err)
	}
	q, err := declareQueue(inbox, s.c.proto.ReplyQueue(strings.ReplaceAll(uuid.NewString(), "-", "")))
	if err != nil {
		return err
	}
	replies, err := inbox.Consume(q.Name, "", // consumer tag: generated
		true,  // autoAck
		true,  // exclusive
		false, // noLocal
		false, // noWait
		nil)
	if err != nil {
		return fmt.Errorf("amqprpc: consume the reply queue: %w", err)
	}
	calls, err := s.openChannel(s.c.cfg.requestConfirms, s.callsClosed)
	if err != nil {
		return err
	}
	s.calls.Store(calls)
	s.inbox, s.replyTo = inbox, q.Name
	if !s.c.cfg.noBatching && s.c.proto.Batches != nil {
		s.requests = amqpio.NewBatcher(s.c.cfg.maxQueued, s.publishCalls)
		s.requests.Start() // stopped by stop
		s.published = make(chan struct{}, 1)
		s.c.wg.Add(1)
		go s.watchConfirms() // ends once stop closes published
	}
	blocks := s.conn.NotifyBlocked(make(chan amqp.Blocking, 1))
	s.c.wg.Add(2)
	go s.readReplies(replies)
	go s.watchBlocked(blocks)
	return nil
}

// openChannel opens a channel, in confirm mode if confirm is set, with its
// returns reader, which calls onClose, if set, once the channel closed.
func (s *session) openChannel(confirm bool, onClose func(*channel)) (*channel, error) {
	ch, err := s.conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("amqprpc: open channel: %w", err)
	}
	if confirm {
		if err := ch.Confirm(false); err != nil { // noWait
			ch.Close()
			return nil, fmt.Errorf("amqprpc: confirm mode: %w", err)
		}
	}
	closed := ch.NotifyClose(make(chan *amqp.Error, 1)) // read by refusal
	returns := ch.NotifyReturn(make(chan amqp.Return))  // unbuffered: see channel
	flush := make(chan chan struct{})
	done := make(chan struct{})
	k := &channel{
		ch:      ch,
		closed:  closed,
		refused: &s.c.refused,
		flush: func() {
			f := make(chan struct{})
			select {
			case flush <- f:
				<-f
			case <-done:
			}
		},
	}
	s.c.wg.Add(1)
	go func() {
		defer s.c.wg.Done()
		s.readReturns(returns, flush, done)
		if onClose != nil {
			onClose(k)
		}
	}()
	return k, nil
}

// publish publishes pub on k, with the mandatory flag, and marks ps, the
// requests it carries, as published there, in order.
func (k *channel) publish(ctx context.Context, exchange, key string, pub amqp.Publishing, ps ...*pending) (amqpio.Confirmation, error) {
	k.pubMu.Lock()
	defer k.pubMu.Unlock()
	confirm, err := k.ch.Publish(ctx, exchange, key,
		true,  // mandatory
		false, // immediate
		pub)
	if err == nil {
		k.seq++
		for _, p := range ps {
			p.seq.Store(k.seq)
			p.via.Store(k)
		}
	}
	return confirm, err
}

// callsChannel returns the open calls channel, opening another when the
// broker closed the last (a refusal of access) and the connection is
// still there.
func (s *session) callsChannel() (*channel, error) {
	if k := s.calls.Load(); !k.ch.IsClosed() {
		return k, nil
	}
	s.castMu.Lock()
	defer s.castMu.Unlock()
	if k := s.calls.Load(); !k.ch.IsClosed() {
		return k, nil
	}
	k, err := s.openChannel(s.c.cfg.requestConfirms, s.callsClosed)
	if err != nil {
		return nil, err
	}
	s.calls.Store(k)
	return k, nil
}

// callsClosed handles the end of k, a calls channel, while the connection
// is there: after a refusal of access (afterRefusal) the calls channel
// opens again for the next; any other reason (the request exchange
// deleted under it) ends the session, as the next declares again what it
// needs.
func (s *session) callsClosed(k *channel) {
	if s.conn.IsClosed() { // the connection's loss: lose's
		return
	}
	if r := k.refusal(); r != nil {
		s.c.afterRefusal(k, r)
		return
	}
	s.conn.Close()
}

// boundedClosed handles the end of k, the channel of calls to topics
// whose queue has a limit: after a refusal of access, as callsClosed;
// any other end fails its unconfirmed calls through their confirms.
func (s *session) boundedClosed(k *channel) {
	if r := k.refusal(); r != nil && !s.conn.IsClosed() {
		s.c.afterRefusal(k, r)
	}
}

// maxBatch bounds the body of a batch of requests: a request that would
// take a batch over it goes in the next.
const maxBatch = 64 << 10

// publishCalls publishes calls to key (publishCall says on which channel),
// as many in a message as maxBatch allows. A call that could not be published goes
// back to its caller to be sent again (errResend); one published when the
// session is lost already fails with ErrConnectionLost, its reply being
// due on the lost connection. Calls whose caller gave up while they waited
// are dropped. Each call then leaves the queue (outgoing.unref).
func (s *session) publishCalls(key string, calls []*outgoing) {
	live := calls[:0] // calls is the batcher's scratch: filtered in place
	for _, o := range calls {
		if o.ctx.Err() != nil {
			o.unref()
			continue
		}
		live = append(live, o)
	}
	for calls = live; len(calls) > 0; {
		n, size := 1, len(calls[0].pub.Body)
		for n < len(calls) && size+len(calls[n].pub.Body) <= maxBatch {
			size += len(calls[n].pub.Body)
			n++
		}
		batch := calls[:n]
		calls = calls[n:]
		// Once published, a call may come back (a batch bounced) and its
		// caller send it again, under another pending request: what is
		// left to do is done to the ones it was published with.
		taken := s.taken[:0]
		for _, o := range batch {
			taken = append(taken, o.pending)
		}
		k, confirm, err := s.publishBatch(key, batch, taken)
		if err == nil && confirm != nil {
			m := publication{ch: k, confirm: confirm, calls: make([]callOf, len(batch))}
			for i, o := range batch {
				m.calls[i] = callOf{o.req.MsgID, taken[i]}
			}
			s.watch(m)
		}
		for i, o := range batch {
			id, p := o.req.MsgID, taken[i]
			switch {
			case err != nil:
				s.c.resolveOf(id, p, callResult{err: errResend})
			default:
				p.sent.Store(true)
				select {
				case <-s.lost:
					s.c.resolveOf(id, p, callResult{err: ErrConnectionLost})
				default:
				}
			}
			o.unref()
		}
		clear(taken)
		s.taken = taken[:0]
	}
}

// publishBatch publishes calls, one alone or several in one message, to
// key with the mandatory flag.
func (s *session) publishBatch(key string, calls []*outgoing, ps []*pending) (*channel, amqpio.Confirmation, error) {
	if len(calls) == 1 {
		return s.publishCall(key, calls[0].pub, ps)
	}
	reqs := make([]wire.BatchedRequest, len(calls))
	ids := make([]string, len(calls))
	for i, o := range calls {
		reqs[i] = wire.BatchedRequest{MsgID: o.req.MsgID, Deadline: o.req.Deadline, Meta: o.req.Meta, Body: o.pub.Body}
		ids[i] = o.req.MsgID
	}
	id := wire.BatchID(uuid.NewString())
	pub := amqp.Publishing{UserId: s.userID()}
	if err := s.c.proto.Batches.EncodeRequests(&pub, id, s.replyTo, reqs); err != nil {
		return nil, nil, err
	}
	s.c.inBatch(id, ids)
	s.c.stats.batches.Add(1)
	s.c.stats.batched.Add(uint64(len(calls)))
	return s.publishCall(key, pub, ps)
}

// publishCall publishes pub, one call or several, to key with the
// mandatory flag, on the calls channel, or in confirm mode on the casts
// channel when key's queue refuses requests beyond a limit; it returns
// the channel and, in confirm mode, the broker's confirmation.
func (s *session) publishCall(key string, pub amqp.Publishing, ps []*pending) (*channel, amqpio.Confirmation, error) {
	k, err := s.callChannel(key)
	if err != nil {
		return nil, nil, err
	}
	confirm, err := k.publish(context.Background(), s.c.cfg.exchange, key, pub, ps...)
	return k, confirm, err
}

// watchConfirms fails at once the calls of each message the broker
// refuses (a nack: the topic's queue is full), rather than let them wait
// for replies that cannot come. It takes the messages published since it
// last looked and waits for the newest one's confirm, which the broker
// sends with, or after, those of the others: a wake-up for the messages of
// a round trip, not one each. A message unconfirmed when the session is
// lost is the loss's (lose). It ends when stop closes published.
func (s *session) watchConfirms() {
	defer s.c.wg.Done()
	var waiting []publication
	take := func() { // what was published since
		s.pubMu.Lock()
		waiting = append(waiting, s.unconfirmed...)
		clear(s.unconfirmed)
		s.unconfirmed = s.unconfirmed[:0]
		s.pubMu.Unlock()
	}
	published := s.published
	for published != nil || len(waiting) > 0 {
		if len(waiting) == 0 {
			if _, open := <-published; !open {
				published = nil
			}
			take()
			continue
		}
		// A confirm that comes late (a quorum queue electing its leader)
		// holds up none that come after it: new messages join the wait.
		select {
		case <-waiting[len(waiting)-1].confirm.Done():
		case _, open := <-published:
			if !open {
				published = nil
			}
			take()
		case <-s.lost:
			clear(waiting)
			waiting = waiting[:0]
			published = nil // the session is going: its loss fails the rest (lose)
			continue
		}
		left := waiting[:0]
		for _, m := range waiting {
			select {
			case <-m.confirm.Done():
				s.refused(m)
			default:
				left = append(left, m)
			}
		}
		clear(waiting[len(left):])
		waiting = left
	}
}

// watch hands m, just published, to watchConfirms, unless stop has
// begun: the session is going, and its loss fails m's calls (lose).
func (s *session) watch(m publication) {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	if s.pubStopped {
		return
	}
	s.unconfirmed = append(s.unconfirmed, m)
	select {
	case s.published <- struct{}{}:
	default: // the watcher will look anyway
	}
}

// refused fails the calls of m, confirmed, if the broker refused it, or
// if its channel closed first, alone: a channel that closed over a
// refusal of access, afterRefusal settles; one that closed with its
// connection, lose.
func (s *session) refused(m publication) {
	if m.confirm.Acked() || m.ch.ch.IsClosed() && s.conn.IsClosed() { // the connection's loss fails them (lose)
		return
	}
	if m.ch.refusal() != nil { // closed over a refusal: afterRefusal says what became of each
		return
	}
	for _, c := range m.calls {
		s.c.resolveOf(c.id, c.p, callResult{err: refusedBy(m.ch, s.c.cfg.exchange, c.p.key)})
	}
}

// callChannel returns the channel a call to key goes on: the calls
// channel, or, to a topic whose queue has a limit (Client.bounded), the
// open channel of such calls, in confirm mode, opened if needed. Nothing
// but those calls goes on it: a declaration that fails closes its
// channel, and with it what was published there and not yet confirmed.
func (s *session) callChannel(key string) (*channel, error) {
	if !s.c.bounded(key) {
		return s.callsChannel()
	}
	s.castMu.Lock()
	defer s.castMu.Unlock()
	if s.bounded == nil || s.bounded.ch.IsClosed() {
		k, err := s.openChannel(true, s.boundedClosed)
		if err != nil {
			return nil, err
		}
		s.bounded = k
	}
	return s.bounded, nil
}

// castChannel returns the open casts channel, opening one if needed, after
// making sure of topic's fanout exchange if fanout is set, and returns
// that exchange's name. The declaration runs on channels of its own
// (declareShared), as a broker error closes the channel it happens on.
func (s *session) castChannel(fanout bool, topic string) (*channel, string, error) {
	s.castMu.Lock()
	defer s.castMu.Unlock()
	if s.casts == nil || s.casts.ch.IsClosed() {
		k, err := s.openChannel(true, nil) // casts are always confirmed
		if err != nil {
			return nil, "", err
		}
		s.casts = k
	}
	if !fanout {
		return s.casts, "", nil
	}
	// Declared once a connection: a broker that restarted has forgotten
	// its transient exchanges, and a publication to one it does not have
	// would close the channel. One that deletes itself is declared each
	// time, as it may have gone since.
	x := s.c.proto.FanoutExchange(topic)
	if err := s.c.refused.check(x.Name, ""); err != nil {
		return nil, "", err
	}
	if !s.fanouts[topic] || x.AutoDelete { // one that deletes itself may have gone since: each time
		// On channels of their own, which a refusal of another cast cannot
		// close under it; declared by the topic's servers, it needs no
		// right to declare it.
		err := declareShared(s.conn, x)
		if r, ok := errors.AsType[*accessError](err); ok {
			s.c.refused.note(r)
		}
		if err != nil {
			return nil, "", err
		}
		s.fanouts[topic] = true
	}
	return s.casts, x.Name, nil
}

// readReplies hands each reply to its request until the inbox closes,
// then marks the session lost: without its reply consumer it cannot call,
// so its connection is closed too.
func (s *session) readReplies(replies <-chan amqp.Delivery) {
	defer s.c.wg.Done()
	deliver := s.c.deliver // made once, not for each reply
	for d := range replies {
		if err := s.c.proto.SplitReplies(&d, deliver); err != nil {
			s.c.throttle.warn(s.c.cfg.logger, "amqprpc: dropping malformed replies", "error", err)
		}
	}
	s.conn.Close()
	close(s.lost)
}

// deliver hands reply r to its request, or drops it when none waits. A
// reply to a batch of calls, rather than to a call, comes from a server
// that does not read batches: the batch's calls go again, alone.
func (c *Client) deliver(r *wire.Reply) {
	switch {
	case r.Kind == wire.Beat:
		c.heartbeat(r.ID)
	case r.Kind == wire.Items || r.Kind == wire.End:
		c.streamMessage(r)
	case wire.IsBatchID(r.ID):
		c.bounced(r.ID)
	case !c.resolve(r.ID, callResult{reply: *r}):
		c.cfg.logger.Debug("amqprpc: dropping reply nobody waits for", "correlation_id", wire.Clip(r.ID))
	}
}

// watchBlocked follows the broker's connection.blocked and unblocked.
func (s *session) watchBlocked(blocks <-chan amqp.Blocking) {
	defer s.c.wg.Done()
	for b := range blocks {
		s.blockMu.Lock()
		switch {
		case b.Active && s.blocked == nil:
			s.blocked, s.reason = make(chan struct{}), b.Reason
			s.c.cfg.logger.Warn("amqprpc: the broker blocks publishers", "reason", b.Reason)
		case !b.Active && s.blocked != nil:
			close(s.blocked)
			s.blocked = nil
			s.c.cfg.logger.Info("amqprpc: the broker unblocked publishers")
		}
		s.blockMu.Unlock()
	}
}

// waitUnblocked returns when the broker does not block publishers, or an
// error wrapping ErrBlocked when ctx ends first.
func (s *session) waitUnblocked(ctx context.Context) error {
	s.blockMu.Lock()
	blocked, reason := s.blocked, s.reason
	s.blockMu.Unlock()
	if blocked == nil {
		return nil
	}
	select {
	case <-blocked:
		return nil
	case <-s.lost:
		return ErrConnectionLost
	case <-ctx.Done():
		return fmt.Errorf("%w (%s): %w", ErrBlocked, reason, ctx.Err())
	}
}

// maintain replaces the session each time it is lost, until the client
// is closed.
func (c *Client) maintain(s *session) {
	defer c.wg.Done()
	for {
		select {
		case <-s.lost:
		case <-c.done:
			s.conn.Close()
			s.stop()
			return
		}
		c.lose(s)
		s.stop()
		if s = c.reconnect(); s == nil {
			return
		}
	}
}

// stop stops what the session runs beside its connection; calls still
// queued to be published go back to their callers, to be sent on the next
// session.
func (s *session) stop() {
	if s.requests != nil {
		for _, o := range s.requests.Stop() {
			s.c.resolve(o.req.MsgID, callResult{err: errResend})
			o.unref()
		}
		// A publishCalls may still be under way in a caller's goroutine
		// (the batcher's idle path): watch sees pubStopped.
		s.pubMu.Lock()
		if !s.pubStopped {
			s.pubStopped = true
			close(s.published)
		}
		s.pubMu.Unlock()
	}
}

// lose forgets the lost session s and fails every request that was
// published on it and waits for a reply: its replies, sent to the lost
// connection's exclusive queue, cannot reach a new one. Calls queued and
// not yet published are sent again (stop).
func (c *Client) lose(s *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess == s {
		c.sess = nil
	}
	for id, p := range c.pending {
		if !p.sent.Load() {
			continue
		}
		delete(c.pending, id)
		select {
		case p.result <- callResult{err: ErrConnectionLost}:
		default: // a gather whose buffer is full: it will see c.done or its deadline
		}
	}
	c.cfg.logger.Warn("amqprpc: connection to the broker lost; reconnecting")
}

// reconnect opens a new session, backing off between attempts, and
// installs it; it returns nil once the client is closed.
func (c *Client) reconnect() *session {
	open := func() (*session, error) {
		s, err := c.openSession()
		if err != nil {
			return nil, err
		}
		if !c.install(s) {
			s.conn.Close()
			s.stop()
			return nil, ErrClosed
		}
		return s, nil
	}
	closed := func(err error) bool { return errors.Is(err, ErrClosed) || c.ctx.Err() != nil }
	failed := func(attempt int, err error) {
		c.cfg.logger.Warn("amqprpc: reconnect", "attempt", attempt, "error", err)
	}
	s, attempts, _ := amqpio.Retry(c.cfg.backoff(), c.done, open, closed, failed)
	if s != nil {
		c.stats.reconnects.Add(1)
		c.cfg.logger.Info("amqprpc: reconnected", "attempts", attempts)
	}
	return s
}

// install makes s the client's session and wakes the requests waiting for
// one; it reports false, and does nothing, once the client is closed.
func (c *Client) install(s *session) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return false
	}
	c.sess = s
	close(c.ready)
	c.ready = make(chan struct{})
	return true
}

// unrouted is why requests to a routing key came back unroutable, as the
// broker last said, and whether it is being asked again.
type unrouted struct {
	err    error // nil until the broker said
	at     time.Time
	asking bool
}

// unroutable returns the error of a request to key that the broker could
// not route: ErrNoServer, with the broker's reason when it has one. A
// topic whose queue exists on a node that is down, or cannot be reached
// (a classic queue, in a cluster), routes nowhere, as one no server ever
// declared; a passive declaration of the queue tells them apart. It is
// asked by another goroutine (the one that reads returns must not wait
// for the broker: it would hold up the connection), at most once a second
// for each key, and until it answers, requests to key fail with
// ErrNoServer alone.
func (s *session) unroutable(key string) error {
	s.whyMu.Lock()
	defer s.whyMu.Unlock()
	w := s.why[key]
	if !w.asking && time.Since(w.at) > time.Second {
		if s.why == nil || len(s.why) > maxUnrouted {
			s.why = make(map[string]unrouted)
		}
		w.asking = true
		s.why[key] = w
		s.c.wg.Add(1)
		go s.ask(key)
	}
	if w.err == nil {
		return ErrNoServer
	}
	return w.err
}

// maxUnrouted bounds the routing keys whose reasons a session remembers.
const maxUnrouted = 1024

// ask asks the broker why requests to key are unroutable, for unroutable.
func (s *session) ask(key string) {
	defer s.c.wg.Done()
	err := ErrNoServer
	if ch, cerr := s.conn.Channel(); cerr == nil {
		_, qerr := ch.QueueDeclarePassive(key, false, false, false, false, nil)
		var aerr *amqp.Error
		if errors.As(qerr, &aerr) && aerr.Code == amqp.NotFound && strings.Contains(aerr.Reason, "down") {
			err = fmt.Errorf("%w: its queue %q is on a node that is down or cannot be reached (the broker: %s)", ErrNoServer, key, aerr.Reason)
		}
		ch.Close()
	}
	s.whyMu.Lock()
	defer s.whyMu.Unlock()
	if s.why != nil {
		s.why[key] = unrouted{err: err, at: time.Now()}
	}
}
