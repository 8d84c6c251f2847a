package certauthority

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// authority is parsed CA material: the signing cert and key, and the chain up to the root.
type authority struct {
	cert     *x509.Certificate
	key      crypto.Signer
	chain    []*x509.Certificate // signing cert first, root last
	chainPEM []string            // the same, PEM
	root     *x509.Certificate
	rootPEM  []byte
	roots    *x509.CertPool
	inters   *x509.CertPool // certs between a leaf and the root
	plugged  bool
}

func newAuthority(m *Material, plugged bool) (*authority, error) {
	key, err := parseKey(m.KeyPEM)
	if err != nil {
		return nil, err
	}
	certs, err := parseCerts(m.CertPEM)
	if err != nil || len(certs) == 0 {
		return nil, fmt.Errorf("parse %s: %w", CACertFile, errors.Join(err, errors.New("no certificate")))
	}
	a := &authority{cert: certs[0], key: key, plugged: plugged, roots: x509.NewCertPool(), inters: x509.NewCertPool()}
	if !a.cert.IsCA {
		return nil, fmt.Errorf("%s is not a CA certificate", CACertFile)
	}
	if !publicKeysEqual(key.Public(), a.cert.PublicKey) {
		return nil, fmt.Errorf("%s does not match %s", CAKeyFile, CACertFile)
	}
	chain, err := a.buildChain(m)
	if err != nil {
		return nil, err
	}
	a.chain = chain
	for i, c := range chain {
		a.chainPEM = append(a.chainPEM, string(certPEM(c)))
		if i < len(chain)-1 {
			a.inters.AddCert(c)
		}
	}
	a.root = chain[len(chain)-1]
	a.rootPEM = certPEM(a.root)
	a.roots.AddCert(a.root)
	if _, err := a.cert.Verify(x509.VerifyOptions{Roots: a.roots, Intermediates: a.inters, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("%s does not chain to %s: %w", CACertFile, RootCertFile, err)
	}
	return a, nil
}

// buildChain returns signing cert ... root from cert-chain.pem and root-cert.pem.
func (a *authority) buildChain(m *Material) ([]*x509.Certificate, error) {
	chain, err := parseCerts(m.ChainPEM)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", CertChainFile, err)
	}
	if len(chain) == 0 || !chain[0].Equal(a.cert) {
		chain = append([]*x509.Certificate{a.cert}, chain...)
	}
	roots, err := parseCerts(m.RootPEM)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", RootCertFile, err)
	}
	last := chain[len(chain)-1]
	switch {
	case len(roots) > 0 && !last.Equal(roots[0]):
		chain = append(chain, roots[0])
	case len(roots) == 0 && last.CheckSignatureFrom(last) != nil:
		return nil, fmt.Errorf("no %s and %s is not self-signed", RootCertFile, CACertFile)
	}
	return chain, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// generateRoot makes a self-signed root for the trust domain.
func generateRoot(cfg Config) (*Material, error) {
	key, err := generateKey(cfg.KeyAlgorithm, cfg.RSAKeyBits)
	if err != nil {
		return nil, err
	}
	now := cfg.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{Organization: []string{cfg.TrustDomain}, CommonName: "controlplane root CA"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(cfg.RootTTL),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create root certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	cert := certPEM(&x509.Certificate{Raw: der})
	return &Material{CertPEM: cert, KeyPEM: keyPEM, ChainPEM: cert, RootPEM: cert}, nil
}

func generateKey(alg KeyAlgorithm, rsaBits int) (crypto.Signer, error) {
	var key crypto.Signer
	var err error
	switch alg {
	case RSA:
		key, err = rsa.GenerateKey(rand.Reader, rsaBits)
	default:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", alg, err)
	}
	return key, nil
}

func randomSerial() *big.Int {
	// 128 random bits; rand.Int on crypto/rand never fails in practice (Go 1.24+ panics instead).
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	return n
}
