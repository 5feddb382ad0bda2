package lab

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// FrontProxyClientName is the common name of the client certificate the API server presents
// to aggregated API servers (metrics-server, KEDA's adapter); extension servers trust request
// headers only from this name.
const FrontProxyClientName = "front-proxy-client"

// PKI is a throwaway certificate authority and the certificates a loopback control plane
// needs, as PEM files in Dir. One CA signs everything and is also the client CA.
type PKI struct {
	Dir string
	// CA
	CACert, CAKey string
	// APIServerCert/Key serve 127.0.0.1, localhost and the in-cluster service names.
	APIServerCert, APIServerKey string
	// AdminCert/Key: a client in group system:masters, used by every component and by tests.
	AdminCert, AdminKey string
	// FrontProxyCert/Key: the API server's client identity towards aggregated API servers.
	FrontProxyCert, FrontProxyKey string
	// ServiceAccountKey/Pub sign and verify service-account tokens.
	ServiceAccountKey, ServiceAccountPub string

	ca    *x509.Certificate
	caKey crypto.Signer
}

// NewPKI generates a CA and the control plane's certificates under dir.
func NewPKI(dir string) (*PKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create pki dir: %w", err)
	}
	p := &PKI{Dir: dir}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ca key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "headroom-lab-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create ca cert: %w", err)
	}
	p.ca, err = x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse ca cert: %w", err)
	}
	p.caKey = key
	p.CACert, p.CAKey = filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if err := writeCert(p.CACert, der); err != nil {
		return nil, err
	}
	if err := writeKey(p.CAKey, key); err != nil {
		return nil, err
	}
	if p.APIServerCert, p.APIServerKey, err = p.Issue("apiserver", CertRequest{
		CommonName: "kube-apiserver", Server: true,
		Hosts: []string{"127.0.0.1", "localhost", "10.0.0.1", "kubernetes", "kubernetes.default",
			"kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
	}); err != nil {
		return nil, err
	}
	if p.AdminCert, p.AdminKey, err = p.Issue("admin", CertRequest{
		CommonName: "lab-admin", Organization: []string{"system:masters"}, Client: true,
	}); err != nil {
		return nil, err
	}
	if p.FrontProxyCert, p.FrontProxyKey, err = p.Issue("front-proxy-client", CertRequest{
		CommonName: FrontProxyClientName, Client: true,
	}); err != nil {
		return nil, err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate service-account key: %w", err)
	}
	p.ServiceAccountKey, p.ServiceAccountPub = filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")
	if err := writeKey(p.ServiceAccountKey, saKey); err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(saKey.Public())
	if err != nil {
		return nil, fmt.Errorf("marshal service-account public key: %w", err)
	}
	if err := os.WriteFile(p.ServiceAccountPub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600); err != nil {
		return nil, fmt.Errorf("write %s: %w", p.ServiceAccountPub, err)
	}
	return p, nil
}

// CertRequest describes a certificate for Issue. Hosts that parse as IP addresses become IP
// SANs, the others DNS SANs.
type CertRequest struct {
	CommonName   string
	Organization []string
	Hosts        []string
	Server       bool
	Client       bool
}

// Issue signs a new certificate with the CA and writes NAME.crt and NAME.key in Dir.
func (p *PKI) Issue(name string, req CertRequest) (certPath, keyPath string, err error) {
	if !req.Server && !req.Client {
		return "", "", fmt.Errorf("issue %q: certificate must be for server or client use", name)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("issue %q: %w", name, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: req.CommonName, Organization: req.Organization},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	}
	if req.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if req.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	for _, h := range req.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, key.Public(), p.caKey)
	if err != nil {
		return "", "", fmt.Errorf("issue %q: %w", name, err)
	}
	certPath, keyPath = filepath.Join(p.Dir, name+".crt"), filepath.Join(p.Dir, name+".key")
	if err := writeCert(certPath, der); err != nil {
		return "", "", err
	}
	if err := writeKey(keyPath, key); err != nil {
		return "", "", err
	}
	return certPath, keyPath, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}

func writeCert(path string, der []byte) error {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("marshal key %s: %w", path, err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
