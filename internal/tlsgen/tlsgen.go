// Command tlsgen writes a self-signed certificate authority and, signed by
// it, a server certificate for localhost and a client certificate, for
// testing amqprpc over TLS against a local broker:
//
//	go run ./internal/tlsgen -dir DIR
//
// It writes ca.pem, server.pem, server-key.pem, client.pem and
// client-key.pem, readable by all: they secure nothing but tests.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"log"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

func main() {
	dir := flag.String("dir", "", "directory to write the certificates to")
	flag.Parse()
	if *dir == "" {
		log.Fatal("usage: tlsgen -dir DIR")
	}
	if err := generate(*dir); err != nil {
		log.Fatal(err)
	}
}

func generate(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	caKey, caCert, caDER, err := issue(&x509.Certificate{
		Subject:               pkix.Name{CommonName: "amqprpc test CA"},
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}, nil, nil)
	if err != nil {
		return err
	}
	if err := writePEM(dir, "ca.pem", "CERTIFICATE", caDER); err != nil {
		return err
	}
	for _, leaf := range []struct {
		name string
		tmpl *x509.Certificate
	}{
		{"server", &x509.Certificate{
			Subject:     pkix.Name{CommonName: "localhost"},
			DNSNames:    []string{"localhost"},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}},
		{"client", &x509.Certificate{
			Subject:     pkix.Name{CommonName: "amqprpc test client"},
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}},
	} {
		key, _, der, err := issue(leaf.tmpl, caCert, caKey)
		if err != nil {
			return err
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return err
		}
		if err := writePEM(dir, leaf.name+".pem", "CERTIFICATE", der); err != nil {
			return err
		}
		if err := writePEM(dir, leaf.name+"-key.pem", "PRIVATE KEY", keyDER); err != nil {
			return err
		}
	}
	return nil
}

// issue makes a key and a certificate from tmpl, signed by parent (self
// signed when parent is nil), valid for ten years from an hour ago.
func issue(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*ecdsa.PrivateKey, *x509.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, nil, nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().AddDate(10, 0, 0)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("create certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	return key, cert, der, err
}

func writePEM(dir, name, kind string, der []byte) error {
	data := pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der})
	return os.WriteFile(filepath.Join(dir, name), data, 0o644)
}
