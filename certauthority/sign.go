package certauthority

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/url"
	"time"
)

// Sign issues a leaf certificate for id from a PEM CSR. Only the proven identity goes into
// the certificate (URI SAN meshname.SPIFFEID); the CSR's subject and SANs
// are ignored. ttl 0 means the default; a negative ttl or one above the maximum is refused.
// The chain is leaf first, root last. Errors are *Refusal.
func (ca *CA) Sign(ctx context.Context, csrPEM []byte, id Identity, ttl time.Duration) ([]string, error) {
	ttl, err := ca.checkTTL(ttl)
	if err != nil {
		return nil, err
	}
	csr, err := parseCSR(csrPEM)
	if err != nil {
		return nil, err
	}
	return ca.signCSR(ctx, csr, id, ttl)
}

func (ca *CA) checkTTL(ttl time.Duration) (time.Duration, error) {
	switch {
	case ttl == 0:
		return ca.cfg.DefaultCertTTL, nil
	case ttl < 0:
		return 0, invalidArgument(ReasonValidityInvalid, "requested validity %s is negative", ttl)
	case ttl > ca.cfg.MaxCertTTL:
		return 0, invalidArgument(ReasonValidityInvalid, "requested validity %s exceeds the maximum %s", ttl, ca.cfg.MaxCertTTL)
	}
	return ttl, nil
}

// parseCSR decodes a PEM CSR and checks its signature and key strength.
func parseCSR(csrPEM []byte) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode(csrPEM)
	if block == nil || (block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST") {
		return nil, invalidArgument(ReasonCSRUnparseable, "CSR is not a PEM CERTIFICATE REQUEST")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, invalidArgument(ReasonCSRUnparseable, "CSR cannot be parsed: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, invalidArgument(ReasonCSRBadSignature, "CSR signature is invalid: %v", err)
	}
	if err := checkKey(csr.PublicKey); err != nil {
		return nil, err
	}
	return csr, nil
}

func checkKey(pub any) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return invalidArgument(ReasonWeakKey, "CSR key too weak: RSA %d bits, need at least 2048", k.N.BitLen())
		}
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return invalidArgument(ReasonWeakKey, "CSR key curve %s not allowed: use P-256 or P-384", k.Curve.Params().Name)
		}
	default:
		return invalidArgument(ReasonWeakKey, "CSR key type %T not allowed: use ECDSA P-256/P-384 or RSA >= 2048", pub)
	}
	return nil
}

func (ca *CA) signCSR(_ context.Context, csr *x509.CertificateRequest, id Identity, ttl time.Duration) ([]string, error) {
	return ca.signLeaf(csr, id, ttl)
}

// signLeaf signs with the current signer. The chain is the leaf, the
// signer's intermediates and, last, the whole trust bundle in one element
// (Istio's agents write the last element as root-cert.pem).
//
// The leaf is not parsed back: x509.CreateCertificate has already checked
// its signature, and what the issued-certificate count needs (serial, SPIFFE
// ID, expiry) is in the template.
func (ca *CA) signLeaf(csr *x509.CertificateRequest, id Identity, ttl time.Duration) ([]string, error) {
	t := ca.trust()
	if err := id.validate(); err != nil {
		return nil, invalidArgument(ReasonBadToken, "identity: %v", err)
	}
	uri, err := id.SPIFFEID(ca.cfg.TrustDomain)
	if err != nil {
		return nil, invalidArgument(ReasonBadToken, "identity: %v", err)
	}
	now := ca.cfg.Now()
	notAfter := earliest(now.Add(ttl), t.signer.cert.NotAfter)
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{uri},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, t.signer.cert, csr.PublicKey, t.signer.key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate for %s: %w", id, err)
	}
	chain := make([]string, 0, 1+len(t.chainTail))
	chain = append(chain, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	ca.issued.add(tmpl.SerialNumber, uri.String(), notAfter.Truncate(time.Second), t) // as encoded
	return append(chain, t.chainTail...), nil
}
