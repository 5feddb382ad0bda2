package queue_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/headroom-autoscaler/headroom/queue"
)

// The TLS tests use an httptest TLS server (and a bare TLS listener for amqps) instead of a
// TLS-enabled RabbitMQ: they check the TLS plumbing (custom CA, server name, client
// certificate), which does not depend on the broker; the API itself is tested against the
// real broker elsewhere.

type pki struct {
	dir                       string
	caFile, certFile, keyFile string
	serverCert                tls.Certificate
	clientCAs                 *x509.CertPool
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	caKey := mustKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(cn string, usage x509.ExtKeyUsage, dns []string) (certPEM, keyPEM []byte) {
		key := mustKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, DNSNames: dns, KeyUsage: x509.KeyUsageDigitalSignature,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	}
	p := &pki{dir: dir, caFile: filepath.Join(dir, "ca.pem"), certFile: filepath.Join(dir, "client.pem"), keyFile: filepath.Join(dir, "client-key.pem")}
	write := func(path string, b []byte) {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(p.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
	cc, ck := issue("headroom-client", x509.ExtKeyUsageClientAuth, nil)
	write(p.certFile, cc)
	write(p.keyFile, ck)
	sc, sk := issue("rabbit.test", x509.ExtKeyUsageServerAuth, []string{"rabbit.test"})
	if p.serverCert, err = tls.X509KeyPair(sc, sk); err != nil {
		t.Fatal(err)
	}
	p.clientCAs = x509.NewCertPool()
	p.clientCAs.AddCert(ca)
	return p
}

func mustKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (p *pki) serverTLS() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.serverCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: p.clientCAs}
}

func TestManagementTLS(t *testing.T) {
	p := newPKI(t)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/api/queues") {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, `{"items":[{"name":"q","vhost":"/","messages_ready":7,"messages_unacknowledged":1,"consumers":2}],"page":1,"page_count":1}`)
	}))
	srv.TLS = p.serverTLS()
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // rejected handshakes are expected
	srv.StartTLS()
	defer srv.Close()

	good := queue.BrokerConfig{Name: "tls", URL: srv.URL, CAFile: p.caFile, CertFile: p.certFile, KeyFile: p.keyFile, ServerName: "rabbit.test"}
	tests := []struct {
		name    string
		mutate  func(c *queue.BrokerConfig)
		wantErr string // "" means success
	}{
		{name: "custom CA, client cert, server name", mutate: func(*queue.BrokerConfig) {}},
		{name: "system roots reject the test CA", mutate: func(c *queue.BrokerConfig) { c.CAFile = "" }, wantErr: "certificate"},
		{name: "server name mismatch", mutate: func(c *queue.BrokerConfig) { c.ServerName = "other.test" }, wantErr: "other.test"},
		{name: "no client certificate", mutate: func(c *queue.BrokerConfig) { c.CertFile, c.KeyFile = "", "" }, wantErr: "certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.mutate(&cfg)
			rd := startReader(t, cfg, queue.Options{Timeout: 5 * time.Second})
			got, err := rd.Snapshot(t.Context(), queue.Selector{Broker: "tls", Queue: "q"})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Ready != 7 || got.Unacked != 1 || got.Consumers != 2 {
				t.Errorf("got %+v, want ready 7, unacked 1, consumers 2", got)
			}
		})
	}
}

// TestAMQPSClientCertificate checks that amqps dials with the configured CA, server name and
// client certificate: a TLS listener verifies the client certificate, then hangs up (it does
// not speak AMQP), so the read fails after a successful handshake.
func TestAMQPSClientCertificate(t *testing.T) {
	p := newPKI(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", p.serverTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peers := make(chan string, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := c.(*tls.Conn)
			if tc.Handshake() == nil && len(tc.ConnectionState().PeerCertificates) > 0 {
				peers <- tc.ConnectionState().PeerCertificates[0].Subject.CommonName
			}
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	cfg := queue.BrokerConfig{Name: "amqps", URL: fmt.Sprintf("amqps://u:Secret-pw@127.0.0.1:%d/", port),
		CAFile: p.caFile, CertFile: p.certFile, KeyFile: p.keyFile, ServerName: "rabbit.test"}
	rd := startReader(t, cfg, queue.Options{Timeout: 2 * time.Second})
	_, err = rd.Snapshot(t.Context(), queue.Selector{Broker: "amqps", Queue: "q"})
	if err == nil || strings.Contains(err.Error(), "Secret-pw") {
		t.Errorf("got %v, want an error (the listener hangs up) without the password", err)
	}
	select {
	case cn := <-peers:
		if cn != "headroom-client" {
			t.Errorf("server saw client certificate %q, want headroom-client", cn)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("no TLS handshake with a client certificate reached the listener")
	}
}
