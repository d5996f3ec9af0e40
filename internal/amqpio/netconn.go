package amqpio

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// coalescer is the net.Conn under amqp091-go: the coalescing engine over
// bytes, so that frames written close together share one write system
// call. amqp091-go flushes after every message (a request, a reply, an
// ack); at 64 calls in flight this takes a client and a server from 2.4
// write system calls per call to 0.5 (see bench/RESULTS.md). A write to an
// idle connection goes out at once, from the writer; writes to a busy one
// are appended to a buffer that the flusher writes out.
type coalescer struct {
	net.Conn
	coalescing[byte]
}

// maxPending bounds what writers may queue before they wait for the
// flusher, so that a slow network still slows them down.
const maxPending = 1 << 20

func newCoalescer(conn net.Conn) *coalescer {
	c := &coalescer{Conn: conn}
	c.init(func(out []byte) error {
		_, err := c.Conn.Write(out)
		return err
	})
	c.start()
	return c
}

// Write writes p at once when the connection is idle, and otherwise
// queues it for the flusher; it returns the error of an earlier write.
func (c *coalescer) Write(p []byte) (int, error) {
	c.mu.Lock()
	for len(c.queue) >= maxPending && c.err == nil {
		c.drained.Wait()
	}
	if c.err != nil {
		c.mu.Unlock()
		return 0, c.err
	}
	if c.idle() {
		c.mu.Unlock()
		_, err := c.Conn.Write(p)
		c.mu.Lock()
		more := c.finished(err)
		c.mu.Unlock()
		if more {
			c.ring()
		}
		if err != nil {
			return 0, err
		}
		return len(p), nil
	}
	c.queue = append(c.queue, p...)
	c.mu.Unlock()
	c.ring()
	return len(p), nil
}

// Close closes the connection, which ends a write under way, and stops
// the flusher; what is still queued is dropped, as the connection is
// going.
func (c *coalescer) Close() error {
	c.mu.Lock()
	if c.err == nil {
		c.err = net.ErrClosed
	}
	c.mu.Unlock()
	err := c.Conn.Close()
	c.stop()
	return err
}

// netDial returns the dialer of one connection for amqp091-go: the TCP
// connection, made within timeout (which bounds the handshakes too, as
// amqp091-go's own dialer does) or until ctx ends, coalesces its writes
// (coalescer) and hands amqp091-go only frames it can read, admitted by
// budget (FrameReader), over TLS when tlsConfig is set. TLS runs here,
// between the two, rather than in amqp091-go, so that the frame reader
// sees frames and not ciphertext. dialed sees the TCP connection as soon
// as it is made.
func netDial(ctx context.Context, timeout time.Duration, tlsConfig *tls.Config, budget *Budget, dialed func(net.Conn)) func(network, addr string) (net.Conn, error) {
	return func(network, addr string) (net.Conn, error) {
		d := net.Dialer{Timeout: timeout}
		raw, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		dialed(raw)
		// Heartbeats have not started: the handshakes must not stall
		// forever on a dead broker. amqp091-go clears the deadline once
		// the connection is open.
		if err := raw.SetDeadline(time.Now().Add(timeout)); err != nil {
			raw.Close()
			return nil, err
		}
		var conn net.Conn = newCoalescer(raw)
		if tlsConfig != nil {
			tconn := tls.Client(conn, tlsConfig)
			if err := tconn.HandshakeContext(ctx); err != nil {
				conn.Close()
				return nil, err
			}
			conn = tconn
		}
		return NewFrameReader(conn, budget), nil
	}
}

// tlsTarget returns the URL to give amqp091-go for rawURL and, for an
// amqps:// URL, the TLS configuration to dial it with: the URL becomes an
// amqp:// one with its port (5671 by default), as netDial does the TLS.
// The configuration is cfg, or else the one the URL's query describes
// (cacertfile, certfile, keyfile, server_name_indication), as amqp091-go
// would make it; its ServerName defaults to the URL's host.
func tlsTarget(rawURL string, cfg *tls.Config) (string, *tls.Config, error) {
	uri, err := amqp.ParseURI(rawURL)
	if err != nil || uri.Scheme != "amqps" {
		return rawURL, nil, nil // amqp091-go reports a bad URL itself
	}
	if cfg == nil {
		if cfg, err = tlsConfigFromURI(uri); err != nil {
			return "", nil, err
		}
	} else {
		cfg = cfg.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = uri.Host
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", nil, err
	}
	u.Scheme = "amqp"
	u.Host = net.JoinHostPort(uri.Host, strconv.Itoa(uri.Port))
	return u.String(), cfg, nil
}

// tlsConfigFromURI makes the TLS configuration of an amqps:// URL that
// comes without one.
func tlsConfigFromURI(uri amqp.URI) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: uri.ServerName, MinVersion: tls.VersionTLS12}
	if uri.CACertFile != "" {
		pem, err := os.ReadFile(uri.CACertFile)
		if err != nil {
			return nil, fmt.Errorf("read CA certificate: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		cfg.RootCAs.AppendCertsFromPEM(pem)
	}
	if uri.CertFile != "" && uri.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(uri.CertFile, uri.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
