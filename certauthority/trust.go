package certauthority

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"slices"
	"time"
)

// trust is what the CA signs with and what the mesh accepts at one moment.
// It is replaced whole (never modified) by a rotation step or a cacerts
// reload, so a call sees one consistent state.
type trust struct {
	signer *authority // signs leaves, the serving certificate and bootstrap tokens
	// others are the other authority of a rotation (the next one while the
	// old one signs, the old one once the next one signs): bootstrap tokens
	// they signed stay valid.
	others    []*authority
	bundle    []*x509.Certificate // the roots the mesh accepts, the signer's first
	bundlePEM []byte
	// chainTail is what follows a leaf in a CreateCertificate response: the
	// signer's intermediates and the bundle as one string, encoded once.
	chainTail []string
	clientCAs *x509.CertPool // roots and intermediates, named to TLS clients
	bundleID  string         // see bundleID
	// signerRootID is rootID(signer.root).
	signerRootID string
	roots        *x509.CertPool // bundle
	inters       *x509.CertPool // the certificates between a leaf and a root, of every authority
	phase        Phase          // "" when no rotation is under way
}

// newTrust is the trust of signer alone, plus others, with the roots of
// bundle (signer's root first; duplicates dropped).
func newTrust(signer *authority, others []*authority, bundle []*x509.Certificate, phase Phase) *trust {
	t := &trust{signer: signer, others: others, roots: x509.NewCertPool(), inters: x509.NewCertPool(), phase: phase}
	for _, r := range append([]*x509.Certificate{signer.root}, bundle...) {
		if !containsCert(t.bundle, r) {
			t.bundle = append(t.bundle, r)
			t.bundlePEM = append(t.bundlePEM, certPEM(r)...)
			t.roots.AddCert(r)
		}
	}
	for _, a := range append([]*authority{signer}, others...) {
		for _, c := range a.chain[:len(a.chain)-1] {
			t.inters.AddCert(c)
		}
	}
	t.bundleID = bundleID(t.bundle)
	t.signerRootID = rootID(signer.root)
	t.chainTail = append(slices.Clone(signer.chainPEM[:len(signer.chainPEM)-1]), string(t.bundlePEM))
	t.clientCAs = t.roots.Clone()
	for _, a := range t.verifiers() {
		for _, c := range a.chain[:len(a.chain)-1] {
			t.clientCAs.AddCert(c)
		}
	}
	return t
}

// bundleID names a trust bundle by content, whatever the order of its roots:
// "sha256:" and the first 12 bytes of the hash of its roots' sorted hashes.
// It goes into the generated xDS, so a new bundle is a new version there.
func bundleID(roots []*x509.Certificate) string {
	sums := make([][32]byte, len(roots))
	for i, r := range roots {
		sums[i] = sha256.Sum256(r.Raw)
	}
	slices.SortFunc(sums, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
	h := sha256.New()
	for _, s := range sums {
		h.Write(s[:])
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)[:12])
}

// rootID names one root the same way.
func rootID(root *x509.Certificate) string { return bundleID([]*x509.Certificate{root}) }

func containsCert(list []*x509.Certificate, c *x509.Certificate) bool {
	for _, l := range list {
		if bytes.Equal(l.Raw, c.Raw) {
			return true
		}
	}
	return false
}

// verifiers are the authorities whose bootstrap tokens are accepted.
func (t *trust) verifiers() []*authority { return append([]*authority{t.signer}, t.others...) }

// trust returns the current state.
func (ca *CA) trust() *trust { return ca.cur.Load() }

// setTrust makes t current. When the bundle or signer changed it rewrites
// the published root file, drops the serving certificate (the next
// handshake gets one from the new signer) and tells the watchers.
func (ca *CA) setTrust(t *trust) {
	old := ca.cur.Swap(t)
	// Entries verified under old already miss; drop them now.
	ca.authCache.reset()
	if old != nil && old.signer == t.signer && old.bundleID == t.bundleID {
		return
	}
	ca.serving.reset()
	ca.metrics.setExpiry(t, ca.cfg.Now())
	if old == nil {
		return
	}
	if ca.cfg.PublishRootFile != "" {
		if err := writeFileAtomic(ca.cfg.PublishRootFile, t.bundlePEM, 0o644); err != nil {
			ca.log.Error("cannot publish the trust bundle", "file", ca.cfg.PublishRootFile, "error", err)
		}
	}
	ca.log.Info("trust bundle changed", "bundle", t.bundleID, "roots", len(t.bundle), "phase", string(t.phase),
		"signer_root", rootID(t.signer.root), "signer_expiry", t.signer.cert.NotAfter)
	ca.watchMu.Lock()
	watchers := append([]func(){}, ca.watchers...)
	ca.watchMu.Unlock()
	for _, w := range watchers {
		w()
	}
}

// OnTrustChange registers fn, called after the trust bundle or the signing
// certificate changed (a rotation step or a cacerts reload), on the
// goroutine that applied the change (Start's): a slow fn delays the next
// re-read.
func (ca *CA) OnTrustChange(fn func()) {
	ca.watchMu.Lock()
	defer ca.watchMu.Unlock()
	ca.watchers = append(ca.watchers, fn)
}

// BundleID names the current trust bundle (see RootPEM): "sha256:" and 24
// hex digits of its roots' hash.
func (ca *CA) BundleID() string { return ca.trust().bundleID }

// Root is one root of the trust bundle.
type Root struct {
	ID      string    `json:"id"`
	Subject string    `json:"subject"`
	Expiry  time.Time `json:"expiry"`
	Signing bool      `json:"signing"` // the signer chains to it
}

// Roots of the trust bundle, the signing one first.
func (t *trust) rootList() []Root {
	out := make([]Root, len(t.bundle))
	for i, r := range t.bundle {
		out[i] = Root{ID: rootID(r), Subject: r.Subject.String(), Expiry: r.NotAfter, Signing: r.Equal(t.signer.root)}
	}
	return out
}
