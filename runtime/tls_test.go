package runtime_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amqprpc/amqprpc/internal/testsvc"
	"github.com/amqprpc/amqprpc/runtime"
)

// tlsURL is the TLS listener of the broker the tests run against,
// AMQPRPC_TLS_ADDR (make test starts a node of its own with one), with a
// password in it that the errors must not show.
var tlsURL = "amqps://guest:s3cret-guest@" + os.Getenv("AMQPRPC_TLS_ADDR") + "/"

// tlsFiles returns the directory of the test CA and certificates,
// AMQPRPC_TLS_DIR, or skips the test when there is no TLS listener.
func tlsFiles(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("AMQPRPC_TLS_DIR")
	if dir == "" || os.Getenv("AMQPRPC_TLS_ADDR") == "" {
		t.Skip("no TLS listener: make test starts a broker node with one (AMQPRPC_TLS_ADDR, AMQPRPC_TLS_DIR)")
	}
	if _, err := os.Stat(filepath.Join(dir, "ca.pem")); err != nil {
		t.Fatalf("no test CA in %s: %v", dir, err)
	}
	return dir
}

func tlsConfig(t *testing.T, dir string, clientCert bool) *tls.Config {
	t.Helper()
	ca, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatal("no certificate in ca.pem")
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: "localhost"}
	if clientCert {
		cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg
}

func TestTLS(t *testing.T) {
	dir := tlsFiles(t)
	withTLS := func(cfg *tls.Config) runtime.Option {
		return runtime.WithTLS(cfg)
	}
	url := strings.Replace(tlsURL, "s3cret-guest", "guest", 1)
	topic := newTopic(t)
	serveVia(t, url, topic, "tls", withTLS(tlsConfig(t, dir, true)))

	c, err := runtime.Dial(url, withTLS(tlsConfig(t, dir, true)))
	if err != nil {
		t.Fatalf("Dial over TLS with the test CA and a client certificate: %v", err)
	}
	defer c.Close()
	if sum, err := testsvc.NewArithClient(c, topic).Add(ctxTimeout(t, 5*time.Second), 2, 3); err != nil || sum != 5 {
		t.Fatalf("Add over TLS = %d, %v", sum, err)
	}

	// The same broker refuses the same client without its certificate (in
	// TLS 1.3 the refusal arrives as an alert or as a reset, by timing), and
	// a client that does not trust the test CA refuses the broker.
	for _, tc := range []struct {
		name string
		cfg  *tls.Config
	}{
		{"without a client certificate", tlsConfig(t, dir, false)},
		{"without the test CA", &tls.Config{ServerName: "localhost"}},
	} {
		_, err := runtime.Dial(tlsURL, withTLS(tc.cfg), runtime.WithTimeout(2*time.Second))
		if err == nil {
			t.Fatalf("Dial %s succeeded; the broker must refuse it", tc.name)
		}
		t.Logf("Dial %s: %v", tc.name, err)
		if strings.Contains(err.Error(), "s3cret") {
			t.Fatalf("Dial %s: the error shows the password: %v", tc.name, err)
		}
		var unknownCA x509.UnknownAuthorityError
		if tc.cfg.RootCAs == nil && !errors.As(err, &unknownCA) {
			t.Errorf("Dial %s: %v; want an unknown authority error", tc.name, err)
		}
	}
}
