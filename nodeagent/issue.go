package nodeagent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	securityv1alpha1 "istio.io/api/security/v1alpha1"

	"github.com/librarymesh/controlplane/vmbundle"
)

// renew makes a new key, asks the CA for a certificate and starts serving it.
func (a *Agent) renew(ctx context.Context) error {
	err := a.renewOnce(ctx)
	if err != nil && ctx.Err() == nil {
		a.m.failed()
	}
	return err
}

func (a *Agent) renewOnce(ctx context.Context) error {
	a.refreshRoot()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	csr, err := a.csr(key)
	if err != nil {
		return err
	}
	chain, usedToken, err := a.request(ctx, csr)
	if err != nil {
		return err
	}
	got, err := a.accept(chain, key)
	if err != nil {
		return err
	}
	a.install(got, usedToken)
	return nil
}

func (a *Agent) csr(key *ecdsa.PrivateKey) ([]byte, error) {
	id, err := url.Parse(a.cfg.SPIFFEID())
	if err != nil {
		return nil, fmt.Errorf("SPIFFE ID %q: %w", a.cfg.SPIFFEID(), err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{Organization: []string{a.cfg.TrustDomain}},
		URIs:    []*url.URL{id},
	}, key)
	if err != nil {
		return nil, fmt.Errorf("create CSR: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// request calls CreateCertificate: with the current certificate (mTLS) while
// it is valid, otherwise with the bootstrap token.
func (a *Agent) request(ctx context.Context, csr []byte) ([]string, bool, error) {
	a.mu.Lock()
	cur, roots := a.cur, a.rootPEM
	a.mu.Unlock()
	pool, err := parseRoots(roots)
	if err != nil {
		return nil, false, err
	}
	tlsCfg := &tls.Config{RootCAs: pool, ServerName: a.cfg.ServerName, MinVersion: tls.VersionTLS12, Time: a.cfg.Now}
	useToken := cur == nil || !a.cfg.Now().Before(cur.leaf.NotAfter)
	if !useToken {
		tlsCfg.Certificates = []tls.Certificate{cur.tls}
	}
	conn, err := grpc.NewClient(a.cfg.CAAddress, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		return nil, false, fmt.Errorf("dial CA %s: %w", a.cfg.CAAddress, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, a.cfg.Timeout)
	defer cancel()
	if useToken {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+a.token)
	}
	resp, err := securityv1alpha1.NewIstioCertificateServiceClient(conn).CreateCertificate(ctx, &securityv1alpha1.IstioCertificateRequest{
		Csr: string(csr), ValidityDuration: int64(a.cfg.CertTTL / time.Second),
	})
	if err != nil {
		how := "client certificate"
		if useToken {
			how = "bootstrap token"
		}
		return nil, useToken, fmt.Errorf("CreateCertificate at %s with %s: %w", a.cfg.CAAddress, how, err)
	}
	return resp.GetCertChain(), useToken, nil
}

// accept checks the returned chain: the leaf holds our key, chains to the
// trust bundle and carries our SPIFFE ID. The chain's last element is the
// mesh's trust bundle (Istio's layout): it replaces ours, so a root added by
// a rotation is trusted and a dropped one is no longer.
func (a *Agent) accept(chain []string, key *ecdsa.PrivateKey) (*issued, error) {
	if len(chain) > 1 {
		bundle, err := parseCerts([]byte(chain[len(chain)-1]))
		if err != nil || len(bundle) == 0 {
			return nil, fmt.Errorf("CA returned an unreadable trust bundle: %v", err)
		}
		a.setBundle(bundle)
		if len(bundle) > 1 {
			chain = chain[:len(chain)-1] // the roots are not part of what we present
		}
	}
	var chainPEM []byte
	for _, c := range chain {
		chainPEM = append(chainPEM, []byte(c)...)
		if !bytes.HasSuffix(chainPEM, []byte("\n")) {
			chainPEM = append(chainPEM, '\n')
		}
	}
	certs, err := parseCerts(chainPEM)
	if err != nil || len(certs) == 0 {
		return nil, fmt.Errorf("CA returned an unreadable chain: %v", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	got, err := newIssued(chainPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA returned a chain that does not fit our key: %w", err)
	}
	if err := a.verify(got.leaf, certs[1:]); err != nil {
		return nil, err
	}
	return got, nil
}

func (a *Agent) verify(leaf *x509.Certificate, rest []*x509.Certificate) error {
	a.mu.Lock()
	roots, err := parseRoots(a.rootPEM)
	a.mu.Unlock()
	if err != nil {
		return err
	}
	inter := x509.NewCertPool()
	for _, c := range rest {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: a.cfg.Now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("certificate from the CA does not chain to the mesh root: %w", err)
	}
	if len(leaf.URIs) == 0 || leaf.URIs[0].String() != a.cfg.SPIFFEID() {
		return fmt.Errorf("certificate from the CA is for %v, want %s", leaf.URIs, a.cfg.SPIFFEID())
	}
	return nil
}

func newIssued(chainPEM, keyPEM []byte) (*issued, error) {
	pair, err := tls.X509KeyPair(chainPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	return &issued{chainPEM: chainPEM, keyPEM: keyPEM, tls: pair, leaf: pair.Leaf}, nil
}

// install starts serving a new certificate and writes the files.
func (a *Agent) install(got *issued, usedToken bool) {
	// Counted before Renewals moves, so a scrape after N renewals sees N
	// issued (a test caught the metric one behind).
	a.m.issued(got.leaf.NotAfter)
	now := a.cfg.Now()
	a.mu.Lock()
	a.cur = got
	a.renewAt = now.Add(got.leaf.NotAfter.Sub(now) / 2)
	a.renewals++
	if usedToken {
		a.tokenUse++
	}
	n, renewAt := a.renewals, a.renewAt
	a.mu.Unlock()
	a.writeFiles()
	a.publish()
	a.log.Info("certificate issued", "serial", got.leaf.SerialNumber.Text(16), "expires", got.leaf.NotAfter.UTC(),
		"renew_at", renewAt.UTC(), "with_token", usedToken, "count", n)
}

func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		out = append(out, c)
	}
	return out, nil
}

func parseRoots(data []byte) (*x509.CertPool, error) {
	certs, err := parseCerts(data)
	if err != nil {
		return nil, err
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate in the root file")
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// refreshRoot re-reads the bundle's root-cert.pem so a rotated root file is
// picked up (and served as ROOTCA) without a restart. It reports whether the
// trust bundle grew.
func (a *Agent) refreshRoot() bool {
	data, err := os.ReadFile(filepath.Join(a.cfg.BundleDir, vmbundle.FileRootCert))
	if err != nil {
		a.log.Warn("cannot re-read the root certificate; keeping the one loaded", "error", err)
		return false
	}
	a.mu.Lock()
	same := bytes.Equal(data, a.rootFile)
	a.rootFile = data
	a.mu.Unlock()
	if same {
		return false // unchanged: a root the CA dropped from the bundle stays dropped
	}
	certs, err := parseCerts(data)
	if err != nil || len(certs) == 0 {
		a.log.Warn("the root certificate file does not parse; keeping the one loaded", "error", err)
		return false
	}
	grew := false
	for _, c := range certs {
		grew = a.addRoot(c) || grew
	}
	return grew
}

// setBundle makes the self-signed CA certificates of roots the trust bundle,
// when they differ from it.
func (a *Agent) setBundle(roots []*x509.Certificate) {
	var next []byte
	for _, c := range roots {
		if c.IsCA && bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil {
			next = append(next, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(next) == 0 || bytes.Equal(next, a.rootPEM) {
		return
	}
	a.rootPEM = next
	a.log.Info("trust bundle from the CA", "roots", len(roots))
}

// addRoot adds a self-signed CA certificate to the trust bundle (the CA's
// chain ends with its root; the connection it came on was already verified).
func (a *Agent) addRoot(c *x509.Certificate) bool {
	if !c.IsCA || !bytes.Equal(c.RawIssuer, c.RawSubject) || c.CheckSignatureFrom(c) != nil {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	have, _ := parseCerts(a.rootPEM)
	for _, h := range have {
		if h.Equal(c) {
			return false
		}
	}
	a.rootPEM = append(append([]byte(nil), a.rootPEM...), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	a.log.Info("trust bundle gained a root", "subject", c.Subject.String(), "expires", c.NotAfter.UTC())
	return true
}
