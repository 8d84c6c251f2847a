package certauthority

import (
	"context"
	"crypto/x509"
	"strings"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// TokenReviewer checks a Kubernetes service account token (audience istio-ca).
type TokenReviewer interface {
	// Review returns the token's service account. Tokens the API server rejects yield a
	// *Refusal (Unauthenticated); other errors mean the review could not be done.
	Review(ctx context.Context, token string) (Identity, error)
}

// Ways a caller proves its identity (the "auth" metric label).
const (
	AuthClientCert     = "client_cert"
	AuthKubernetes     = "kubernetes_token"
	AuthBootstrapToken = "bootstrap_token"
)

// caller is a proven identity. A single-use bootstrap token is consumed only after the CSR
// passed its checks, so a bad CSR does not burn the token.
type caller struct {
	id        Identity
	method    string
	singleUse *BootstrapClaims
	cert      *x509.Certificate // the client certificate presented (a renewal)
}

// Authenticate proves the caller of any gRPC call on the server's ports (e.g. an xDS stream
// on 15012) the way CreateCertificate does, and returns its identity and how it was proven
// (AuthClientCert, AuthKubernetes or AuthBootstrapToken). It does not consume single-use
// bootstrap tokens; those stay bounded by their expiry. Errors are *Refusal
// (Unauthenticated), usable as gRPC errors.
func (ca *CA) Authenticate(ctx context.Context) (Identity, string, error) {
	c, err := ca.authenticate(ctx)
	if err != nil {
		return Identity{}, "", err
	}
	return c.id, c.method, nil
}

// authenticate proves the caller: client certificate, then bearer token (a bootstrap token
// this CA issued, otherwise Kubernetes TokenReview). The first that succeeds wins. A bearer
// token on a connection without TLS is refused unless Config.PlaintextTokens is set: it
// travelled in clear, and whoever saw it could use it.
func (ca *CA) authenticate(ctx context.Context) (caller, error) {
	certErr := error(nil)
	if certs := peerCertificates(ctx); len(certs) > 0 {
		id, _, err := ca.clientCertIdentity(certs)
		if err == nil {
			return caller{id: id, method: AuthClientCert, cert: certs[0]}, nil
		}
		certErr = err
	}
	token, present := bearerToken(ctx)
	switch {
	case present && !ca.cfg.PlaintextTokens && !overTLS(ctx):
		return caller{}, unauthenticated(ReasonPlaintextToken,
			"bearer tokens are accepted only over TLS: use the control plane's TLS port (15012); "+
				"without TLS the certificate authority serves only callers with a client certificate")
	case present && token == "":
		return caller{}, unauthenticated(ReasonBadToken, "authorization header is not \"Bearer <token>\"")
	case present:
		return ca.authenticateToken(ctx, token)
	case certErr != nil:
		return caller{}, certErr
	}
	return caller{}, unauthenticated(ReasonNoCredential,
		"no credential: present a client certificate from this CA or an \"authorization: Bearer\" token")
}

func (ca *CA) authenticateToken(ctx context.Context, token string) (caller, error) {
	t, now := ca.trust(), ca.cfg.Now()
	key := tokenKey(token)
	if id, method, ok := ca.authCache.get(key, t, now); ok {
		return caller{id: id, method: method}, nil
	}
	if looksLikeBootstrapToken(token) {
		c, err := ca.verifyBootstrapTokenAt(t, now, token)
		if err != nil {
			return caller{}, err
		}
		cl := caller{id: Identity{Namespace: c.Namespace, ServiceAccount: c.ServiceAccount}, method: AuthBootstrapToken}
		if c.SingleUse {
			// Not remembered: consume must see every use.
			cl.singleUse = &c
			return cl, nil
		}
		ca.authCache.put(key, authEntry{trust: t, id: cl.id, method: cl.method, notAfter: time.Unix(c.Expiry, 0)}, now)
		return cl, nil
	}
	if ca.cfg.TokenReviewer == nil {
		return caller{}, unauthenticated(ReasonBadToken,
			"bearer token is not a bootstrap token of this CA, and Kubernetes token review is not configured")
	}
	id, err := ca.cfg.TokenReviewer.Review(ctx, token)
	if err != nil {
		return caller{}, err
	}
	return caller{id: id, method: AuthKubernetes}, nil
}

// consume marks a single-use bootstrap token used; a second use is refused.
func (ca *CA) consume(ctx context.Context, c caller) error {
	if c.singleUse == nil {
		return nil
	}
	if ca.cfg.UsedTokens == nil {
		return unauthenticated(ReasonBadToken, "single-use bootstrap tokens are not accepted: no used-token store configured")
	}
	first, err := ca.cfg.UsedTokens.MarkUsed(ctx, c.singleUse.ID, time.Unix(c.singleUse.Expiry, 0))
	if err != nil {
		return err
	}
	if !first {
		return unauthenticated(ReasonTokenReused, "single-use bootstrap token %s was already used", c.singleUse.ID)
	}
	return nil
}

// overTLS reports whether the call came over a TLS connection.
func overTLS(ctx context.Context) bool {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return false
	}
	_, ok = p.AuthInfo.(credentials.TLSInfo)
	return ok
}

func peerCertificates(ctx context.Context) []*x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil
	}
	return info.State.PeerCertificates
}

// clientCertIdentity is verifyClientCert, remembered: a chain verified
// under the current trust (by the TLS handshake, or an earlier call on
// the connection) is not verified again while it is valid. chainErr
// reports that err is the chain's (not the identity's).
func (ca *CA) clientCertIdentity(certs []*x509.Certificate) (id Identity, chainErr bool, err error) {
	t, now := ca.trust(), ca.cfg.Now()
	key := chainKey(certs)
	if id, _, ok := ca.authCache.get(key, t, now); ok {
		return id, false, nil
	}
	chain, err := verifyClientChain(t, now, certs)
	if err != nil {
		return Identity{}, true, err
	}
	if id, err = ca.leafIdentity(certs[0]); err != nil {
		return Identity{}, false, err
	}
	notBefore, notAfter := chainWindow(chain)
	ca.authCache.put(key, authEntry{trust: t, id: id, method: AuthClientCert, notBefore: notBefore, notAfter: notAfter}, now)
	return id, false, nil
}

// verifyClientCert checks the chain against our root (whatever the TLS config did) and
// reads the SPIFFE ID of our trust domain from the leaf.
func (ca *CA) verifyClientCert(certs []*x509.Certificate) (Identity, error) {
	if _, err := verifyClientChain(ca.trust(), ca.cfg.Now(), certs); err != nil {
		return Identity{}, err
	}
	return ca.leafIdentity(certs[0])
}

// verifyClientChain verifies certs[0] for client authentication up to a
// root of t (only roots are anchors; our intermediates and those the client
// sent may link), at now.
func verifyClientChain(t *trust, now time.Time, certs []*x509.Certificate) ([]*x509.Certificate, error) {
	inters := t.inters
	if len(certs) > 1 {
		inters = t.inters.Clone()
		for _, c := range certs[1:] {
			inters.AddCert(c)
		}
	}
	chains, err := certs[0].Verify(x509.VerifyOptions{Roots: t.roots, Intermediates: inters,
		CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return nil, unauthenticated(ReasonBadClientCert, "client certificate is not valid for this CA: %v", err)
	}
	return chains[0], nil
}

// leafIdentity reads the SPIFFE ID of our trust domain from a verified leaf.
func (ca *CA) leafIdentity(leaf *x509.Certificate) (Identity, error) {
	if len(leaf.URIs) != 1 {
		return Identity{}, unauthenticated(ReasonBadClientCert, "client certificate must carry exactly one SPIFFE URI SAN, has %d", len(leaf.URIs))
	}
	id, err := identityFromSPIFFE(leaf.URIs[0], ca.cfg.TrustDomain)
	if err != nil {
		return Identity{}, unauthenticated(ReasonBadClientCert, "client certificate: %v", err)
	}
	return id, nil
}

// bearerToken returns the token of "authorization: Bearer TOKEN"; present reports whether
// an authorization header was sent at all.
func bearerToken(ctx context.Context) (token string, present bool) {
	md, _ := metadata.FromIncomingContext(ctx)
	values := md.Get("authorization")
	if len(values) == 0 {
		return "", false
	}
	scheme, tok, ok := strings.Cut(strings.TrimSpace(values[0]), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", true
	}
	return strings.TrimSpace(tok), true
}
