package server_test

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/headroom-autoscaler/headroom/internal/lab"
	"github.com/headroom-autoscaler/headroom/server"
)

func TestMutualTLS(t *testing.T) {
	pki, err := lab.NewPKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srvCert, srvKey, err := pki.Issue("scaler", lab.CertRequest{CommonName: "scaler", Hosts: []string{"127.0.0.1"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	cliCert, cliKey, err := pki.Issue("keda", lab.CertRequest{CommonName: "keda", Client: true})
	if err != nil {
		t.Fatal(err)
	}
	rl, err := server.NewCertReloader(srvCert, srvKey, pki.CACert)
	if err != nil {
		t.Fatal(err)
	}
	rl.CheckEvery = 0 // look at the files on every handshake

	caPEM, err := os.ReadFile(pki.CACert)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	pair, err := tls.LoadX509KeyPair(cliCert, cliKey)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		clientCf *tls.Config
		wantCode codes.Code
	}{
		{name: "client certificate accepted", clientCf: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}}, wantCode: codes.OK},
		{name: "no client certificate rejected", clientCf: &tls.Config{RootCAs: roots}, wantCode: codes.Unavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{serverTLS: rl.TLSConfig(), clientCreds: credentials.NewTLS(tc.clientCf)})
			_, err := e.client.GetMetricSpec(t.Context(), ref("default", "w", map[string]string{"queue": "q"}))
			if got := status.Code(err); got != tc.wantCode {
				t.Fatalf("GetMetricSpec over TLS: code %v (%v), want %v", got, err, tc.wantCode)
			}
		})
	}

	t.Run("certificate reloaded when the files change", func(t *testing.T) {
		// Issue a new server certificate with another name over the same files.
		newCert, newKey, err := pki.Issue("scaler-next", lab.CertRequest{CommonName: "scaler-next", Hosts: []string{"127.0.0.1"}, Server: true})
		if err != nil {
			t.Fatal(err)
		}
		replace(t, newCert, srvCert)
		replace(t, newKey, srvKey)
		var seen string
		cf := &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair},
			VerifyConnection: func(cs tls.ConnectionState) error { seen = cs.PeerCertificates[0].Subject.CommonName; return nil }}
		e := newEnv(t, envOptions{serverTLS: rl.TLSConfig(), clientCreds: credentials.NewTLS(cf)})
		if _, err := e.client.GetMetricSpec(t.Context(), ref("default", "w", map[string]string{"queue": "q"})); err != nil {
			t.Fatalf("GetMetricSpec after rotation: %v", err)
		}
		if seen != "scaler-next" {
			t.Errorf("server presented %q after the files changed, want scaler-next", seen)
		}
	})
}

func replace(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(filepath.Dir(to), "."+filepath.Base(to)+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	// A distinct modification time even on coarse clocks.
	later := time.Now().Add(time.Second)
	if err := os.Chtimes(tmp, later, later); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, to); err != nil {
		t.Fatal(err)
	}
}
