package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// CertReloader serves a TLS certificate (and, for mutual TLS, a client CA) from files, and
// reloads them when the files change: certificates rotated by cert-manager or a mounted
// Secret take effect without a restart. Files are checked at most once per CheckEvery, at
// handshake time; a failed reload keeps the previous material.
type CertReloader struct {
	certFile, keyFile, caFile string
	// CheckEvery bounds how often the files are examined. Default 1s.
	CheckEvery time.Duration
	// OnError, when set, is told about failed reloads.
	OnError func(error)

	mu      sync.Mutex
	checked time.Time
	stamp   string
	cfg     *tls.Config
}

// NewCertReloader loads the certificate, key and optional client CA (caFile "" means no
// client certificate is asked for).
func NewCertReloader(certFile, keyFile, caFile string) (*CertReloader, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("tls: both a certificate and a key are needed")
	}
	r := &CertReloader{certFile: certFile, keyFile: keyFile, caFile: caFile, CheckEvery: time.Second}
	stamp, err := r.fileStamp()
	if err != nil {
		return nil, err
	}
	cfg, err := r.load()
	if err != nil {
		return nil, err
	}
	r.cfg, r.stamp, r.checked = cfg, stamp, time.Now()
	return r, nil
}

// TLSConfig returns a server configuration that reads through the reloader.
func (r *CertReloader) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		NextProtos:         []string{"h2"},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return r.current(), nil },
	}
}

func (r *CertReloader) current() *tls.Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) < r.CheckEvery {
		return r.cfg
	}
	r.checked = time.Now()
	stamp, err := r.fileStamp()
	if err == nil && stamp != r.stamp {
		var cfg *tls.Config
		if cfg, err = r.load(); err == nil {
			r.cfg, r.stamp = cfg, stamp
		}
	}
	if err != nil && r.OnError != nil {
		r.OnError(err)
	}
	return r.cfg
}

// fileStamp identifies the files' current versions by size and modification time.
func (r *CertReloader) fileStamp() (string, error) {
	s := ""
	for _, f := range []string{r.certFile, r.keyFile, r.caFile} {
		if f == "" {
			continue
		}
		fi, err := os.Stat(f)
		if err != nil {
			return "", fmt.Errorf("tls: %w", err)
		}
		s += fmt.Sprintf("%s:%d:%d;", f, fi.Size(), fi.ModTime().UnixNano())
	}
	return s, nil
}

func (r *CertReloader) load() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: load certificate %q and key %q: %w", r.certFile, r.keyFile, err)
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2"},
		Certificates: []tls.Certificate{cert},
	}
	if r.caFile != "" {
		pem, err := os.ReadFile(r.caFile)
		if err != nil {
			return nil, fmt.Errorf("tls: read client ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: client ca %q holds no PEM certificate", r.caFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}
