package runtime

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/url"
	"sync/atomic"
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
//   - It redials one URL; amqprpc tries the brokers of a cluster in turn.
//   - It gives up after a fixed number of attempts at a fixed interval; a
//     server must keep trying, backing off, until it is shut down.
//
// What is RPC-specific is built on top either way: replies go to a queue
// exclusive to the client's connection, which cannot outlive it, so pending
// calls fail at once (ErrConnectionLost), and calls made meanwhile wait
// for the new one.

// connector connects to the first broker of urls that answers.
type connector struct {
	urls []string
	cfg  *config
	name string // the connection's name in the broker's list
	next int    // the URL to try first: the one after the last that failed
}

func newConnector(url string, cfg *config, name string) *connector {
	return &connector{urls: append([]string{url}, cfg.urls...), cfg: cfg, name: name}
}

// connect tries each URL once, in turn, and returns the first connection
// made, or an error naming every URL tried, redacted.
func (k *connector) connect() (*amqp.Connection, error) {
	var errs []error
	for range k.urls {
		u := k.urls[k.next%len(k.urls)]
		conn, err := dial(u, k.cfg, k.name)
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
		k.next++
	}
	return nil, errors.Join(errs...)
}

// dial opens a connection to the broker at rawURL, named name in the
// broker's connection list.
func dial(rawURL string, cfg *config, name string) (*amqp.Connection, error) {
	acfg := cfg.amqpConfig
	acfg.Properties = maps.Clone(acfg.Properties)
	if acfg.Properties == nil {
		acfg.Properties = amqp.NewConnectionProperties()
	}
	if _, ok := acfg.Properties["connection_name"]; !ok {
		acfg.Properties.SetClientConnectionName(name)
	}
	target, tlsConfig, err := tlsTarget(rawURL, acfg.TLSClientConfig)
	if err != nil {
		return nil, fmt.Errorf("amqprpc: dial %s: %w", redact(rawURL), err)
	}
	acfg.Dial = netDial(acfg.Dial, tlsConfig)
	conn, err := amqp.DialConfig(target, acfg)
	if err != nil {
		return nil, fmt.Errorf("amqprpc: dial %s: %w", redact(rawURL), err)
	}
	return conn, nil
}

// reconnect opens a session with open, backing off between attempts
// (WithReconnectBackoff), and counts and logs the reconnection. It returns
// the zero S once quit is closed, and an error of open's that final says
// no attempt can mend; it logs the others, one line an attempt, which the
// backoff spaces out. A client and a server reconnect with it.
func reconnect[S any](cfg *config, log *slog.Logger, quit <-chan struct{}, reconnects *atomic.Uint64, open func() (S, error), final func(error) bool) (S, error) {
	var none S
	start := time.Now()
	for attempt := 0; ; attempt++ {
		select {
		case <-time.After(backoff(attempt, cfg.reconnectMin, cfg.reconnectMax)):
		case <-quit:
			return none, nil
		}
		s, err := open()
		if err != nil && final(err) {
			return none, err
		}
		if err != nil {
			log.Warn("amqprpc: reconnect", "attempt", attempt+1, "error", err)
			continue
		}
		reconnects.Add(1)
		log.Info("amqprpc: reconnected", "attempts", attempt+1, "after", time.Since(start))
		return s, nil
	}
}

// backoff returns how long to wait before reconnection attempt n (from 0):
// first doubled n times, at most most, with the upper half jittered so that
// many clients do not reconnect in step.
func backoff(n int, first, most time.Duration) time.Duration {
	d := first
	for ; n > 0 && d < most; n-- {
		d *= 2
	}
	d = min(d, most)
	return d/2 + rand.N(d/2+1)
}

// redact returns rawURL with its password, if any, replaced by "xxxxx", so
// that it can be logged and put in errors.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "<unparsable broker URL>"
	}
	return u.Redacted()
}

// FanoutExchange returns the name of the exchange that delivers a request
// to every server of topic, for clients and servers whose requests go to
// the exchange named exchange (WithExchange): "<exchange>.fanout.<topic>",
// e.g. "amqprpc.fanout.calc". It is amqprpc's own, apart from
// OpenStack's "<topic>_fanout", which oslo.messaging declares with other
// flags: the two never meet on a broker.
func FanoutExchange(exchange, topic string) string { return exchange + ".fanout." + topic }
