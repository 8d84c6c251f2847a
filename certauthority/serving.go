package certauthority

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"
)

// servingCert is the TLS port's certificate, reissued on a handshake once two thirds of
// its lifetime have passed.
type servingCert struct {
	ca      *CA
	mu      sync.Mutex
	cert    *tls.Certificate
	renewAt time.Time
}

func newServingCert(ca *CA) *servingCert { return &servingCert{ca: ca} }

// reset drops the certificate: the next handshake gets one from the
// current signer, with the current chain.
func (s *servingCert) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cert = nil
}

func (s *servingCert) get() (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.ca.cfg.Now()
	if s.cert != nil && now.Before(s.renewAt) {
		return s.cert, nil
	}
	cert, err := s.ca.issueServingCert(now)
	if err != nil {
		return nil, err
	}
	lifetime := cert.Leaf.NotAfter.Sub(now)
	s.cert, s.renewAt = cert, now.Add(lifetime*2/3)
	s.ca.log.Info("issued serving certificate", "sans", s.ca.servingSANs(), "expiry", cert.Leaf.NotAfter)
	return cert, nil
}

// ServingCertificate returns the current certificate of the TLS gRPC port, issuing or
// renewing it as needed.
func (ca *CA) ServingCertificate() (*tls.Certificate, error) { return ca.serving.get() }

// ServingTLSConfig is the TLS config of the TLS gRPC port (15012): a serving certificate
// from this CA (renewed before expiry on a handshake, without restart) and client
// certificates verified against our root when given, so renewal by client cert works.
func (ca *CA) ServingTLSConfig() *tls.Config {
	base := &tls.Config{
		MinVersion: tls.VersionTLS12,
		Time:       ca.cfg.Now,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return ca.serving.get()
		},
		ClientAuth: tls.VerifyClientCertIfGiven,
	}
	cfg := base.Clone()
	// Each handshake verifies client certificates against the current
	// trust bundle (both roots during a rotation).
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := base.Clone()
		c.ClientCAs = ca.clientCAs()
		return c, nil
	}
	cfg.ClientCAs = ca.clientCAs()
	return cfg
}

// clientCAs are the trust bundle and, since clients often send only their
// leaf, the intermediates of our own authorities.
func (ca *CA) clientCAs() *x509.CertPool {
	t := ca.trust()
	pool := t.roots.Clone()
	for _, a := range t.verifiers() {
		for _, c := range a.chain[:len(a.chain)-1] {
			pool.AddCert(c)
		}
	}
	return pool
}

func (ca *CA) servingSANs() []string {
	return slices.Compact(slices.Concat(DefaultServingSANs, ca.cfg.ExtraServingSANs))
}

func (ca *CA) issueServingCert(now time.Time) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("serving certificate key: %w", err)
	}
	signer := ca.trust().signer
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              earliest(now.Add(ca.cfg.ServingCertTTL), signer.cert.NotAfter),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, san := range ca.servingSANs() {
		if ip := net.ParseIP(san); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, san)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer.cert, key.Public(), signer.key)
	if err != nil {
		return nil, fmt.Errorf("sign serving certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse serving certificate: %w", err)
	}
	chain := [][]byte{der}
	for _, c := range signer.chain {
		chain = append(chain, c.Raw)
	}
	return &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, nil
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
