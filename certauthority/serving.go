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
//
// A client certificate is verified once, in the handshake, by verifyHandshakeCert (not
// by the TLS stack, which would treat our intermediates as anchors and verify it a second
// time); a chain that does not verify fails the handshake, as with
// tls.VerifyClientCertIfGiven. The success is remembered for the connection's calls.
func (ca *CA) ServingTLSConfig() *tls.Config {
	base := &tls.Config{
		MinVersion: tls.VersionTLS12,
		Time:       ca.cfg.Now,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return ca.serving.get()
		},
		ClientAuth: tls.RequestClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return ca.verifyHandshakeCert(cs.PeerCertificates)
		},
	}
	cfg := base.Clone()
	// Each handshake names the current trust bundle (both roots during a
	// rotation) and our intermediates as the accepted issuers.
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := base.Clone()
		c.ClientCAs = ca.trust().clientCAs
		return c, nil
	}
	cfg.ClientCAs = ca.trust().clientCAs
	return cfg
}

// verifyHandshakeCert verifies a client certificate chain for the TLS
// handshake: one that does not chain to the current trust fails the
// handshake. A verified chain without an identity of our trust domain is let
// through (the call may still bring a bearer token) and refused per call.
func (ca *CA) verifyHandshakeCert(certs []*x509.Certificate) error {
	if len(certs) == 0 {
		return nil
	}
	_, chainErr, err := ca.clientCertIdentity(certs)
	if chainErr {
		return err
	}
	return nil
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
