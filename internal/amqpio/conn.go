package amqpio

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/url"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Recovery. Clients and servers survive the loss of their connection: they
// reconnect, with exponential backoff, to the brokers they were given in
// turn, and rebuild what they need on new channels. amqprpc does this
// itself rather than with amqp091-go's Config.Recovery, which redials the
// same Connection and replays its topology, for three reasons:
//
//   - Its recovered channels keep counting delivery tags from 1 again, and a
//     delivery taken before the loss can still be acknowledged after it: the
//     ack then lands, by tag, on another request of the new channel (seen
//     with amqp091-go v1.16.0 and RabbitMQ 3.10), which a server would then
//     lose if it died before handling it, or the broker closes the channel
//     for an unknown tag. At-least-once serving needs acks of deliveries from
//     a lost connection to fail, and the broker to redeliver them; new
//     channels give exactly that.
//   - It redials one URL; amqprpc tries the brokers of a cluster in turn,
//     starting after the one whose connection was lost: a node that froze
//     (a stalled VM, a long pause) still accepts TCP connections, and
//     whoever tries it first waits out a dial timeout.
//   - It gives up after a fixed number of attempts at a fixed interval; a
//     server must keep trying, backing off, until it is shut down.

// Connector connects to the first broker of its URLs that answers. Each
// Connect starts with the URL after the one it last connected to, or last
// failed to: a connection is made again when the last one was lost, and
// the broker that lost it is the one to try last.
type Connector struct {
	urls    []string
	cfg     amqp.Config
	timeout time.Duration
	held    int // each connection's Budget, in bytes; 0 for none

	mu   sync.Mutex
	next int // the URL to try first
}

// Settings are what a Connector dials with.
type Settings struct {
	// URLs are the brokers, tried in turn.
	URLs []string
	// Name is the connection's name in the broker's list of connections.
	Name string
	// TLS, when set, is the TLS configuration of amqps:// URLs, which
	// otherwise make their own from their query.
	TLS *tls.Config
	// Heartbeat is the AMQP heartbeat interval; 0 for amqp091-go's default.
	Heartbeat time.Duration
	// Timeout bounds a dial: the TCP connection and the TLS and AMQP
	// handshakes. A URL's connection_timeout (in milliseconds) overrides
	// it for that URL.
	Timeout time.Duration
	// HeldBytes, when set, bounds the message bodies each connection holds
	// (Budget).
	HeldBytes int
}

// NewConnector returns a connector of s.
func NewConnector(s Settings) *Connector {
	cfg := amqp.Config{Heartbeat: s.Heartbeat, TLSClientConfig: s.TLS, Properties: amqp.NewConnectionProperties()}
	cfg.Properties.SetClientConnectionName(s.Name)
	return &Connector{urls: s.URLs, cfg: cfg, timeout: s.Timeout, held: s.HeldBytes}
}

// Connect tries each URL once, in turn, and returns the first connection
// made, or an error naming every URL tried, redacted. ctx ending stops a
// dial or a handshake under way.
func (k *Connector) Connect(ctx context.Context) (Conn, error) {
	var errs []error
	for range k.urls {
		k.mu.Lock()
		u := k.urls[k.next%len(k.urls)]
		k.mu.Unlock()
		c, err := k.dial(ctx, u)
		if err != nil && ctx.Err() != nil {
			errs = append(errs, err)
			break
		}
		k.mu.Lock()
		k.next++
		k.mu.Unlock()
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// dial opens a connection to the broker at rawURL.
func (k *Connector) dial(ctx context.Context, rawURL string) (Conn, error) {
	fail := func(err error) (Conn, error) { return nil, fmt.Errorf("amqprpc: dial %s: %w", Redact(rawURL), err) }
	target, tlsConf, err := tlsTarget(rawURL, k.cfg.TLSClientConfig)
	if err != nil {
		return fail(err)
	}
	cfg := k.cfg
	cfg.Properties = maps.Clone(cfg.Properties)
	cfg.TLSClientConfig = nil // done below the frame reader, by netDial
	var budget *Budget
	if k.held > 0 {
		budget = NewBudget(k.held)
	}
	var mu sync.Mutex
	var raw, transport net.Conn // the connection being dialed, closed if ctx ends first, and what amqp091-go reads
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if raw != nil {
			raw.Close()
		}
	})
	timeout := k.timeout
	if uri, err := amqp.ParseURI(rawURL); err == nil && uri.ConnectionTimeout > 0 {
		timeout = time.Duration(uri.ConnectionTimeout) * time.Millisecond
	}
	dial := netDial(ctx, timeout, tlsConf, budget, func(c net.Conn) {
		mu.Lock()
		defer mu.Unlock()
		raw = c
		if ctx.Err() != nil { // ended as the TCP connection was made: stop has run already, with nothing to close
			c.Close()
		}
	})
	cfg.Dial = func(network, addr string) (net.Conn, error) {
		c, err := dial(network, addr)
		transport = c
		return c, err
	}
	c, err := amqp.DialConfig(target, cfg)
	if !stop() && err == nil { // ctx ended: the connection is closed
		c.Close()
		err = ctx.Err()
	}
	if err != nil {
		return fail(err)
	}
	return Wrap(c, budget, transport), nil
}

// Backoff is how long to wait between attempts to connect: First, doubled
// after each failed attempt up to Most.
type Backoff struct{ First, Most time.Duration }

// Delay returns how long to wait before attempt n (from 0), with the upper
// half jittered so that many clients do not reconnect in step.
func (b Backoff) Delay(n int) time.Duration {
	d := b.First
	for ; n > 0 && d < b.Most; n-- {
		d *= 2
	}
	d = min(d, b.Most)
	return d/2 + rand.N(d/2+1)
}

// Retry calls open, waiting b.Delay(attempt) before each attempt, until
// it succeeds, until final says its error is one no attempt can mend, or
// until quit is closed (the zero S and a nil error). failed sees every
// other error; Retry returns how many attempts were made.
func Retry[S any](b Backoff, quit <-chan struct{}, open func() (S, error), final func(error) bool, failed func(attempt int, err error)) (S, int, error) {
	var none S
	for attempt := 0; ; attempt++ {
		select {
		case <-time.After(b.Delay(attempt)):
		case <-quit:
			return none, attempt, nil
		}
		s, err := open()
		switch {
		case err == nil:
			return s, attempt + 1, nil
		case final(err):
			return none, attempt + 1, err
		}
		failed(attempt+1, err)
	}
}

// Redact returns rawURL with its password, if any, replaced by "xxxxx", so
// that it can be logged and put in errors.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "<unparsable broker URL>"
	}
	return u.Redacted()
}
