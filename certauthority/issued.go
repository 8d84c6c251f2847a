package certauthority

import (
	"crypto/x509"
	"math/big"
	"sync"
	"time"
)

// issuedCerts are the live workload certificates this replica issued: not
// expired, and not yet replaced by a renewal that presented them. A workload
// renewing with a token (not its certificate) leaves its old certificate
// counted until it expires, which errs on the safe side.
type issuedCerts struct {
	mu   sync.Mutex
	live map[string]issuedCert // by serial, hex
	adds int
}

type issuedCert struct {
	identity string
	root     string // rootID of the signer's root
	bundle   string // bundleID handed out with it
	notAfter time.Time
}

// pruneEvery is how many additions pass between sweeps of expired entries.
const pruneEvery = 256

func newIssuedCerts() *issuedCerts { return &issuedCerts{live: map[string]issuedCert{}} }

// add counts a leaf by its serial, SPIFFE ID and expiry.
func (c *issuedCerts) add(serial *big.Int, identity string, notAfter time.Time, t *trust) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.live[serial.Text(16)] = issuedCert{identity: identity, root: t.signerRootID,
		bundle: t.bundleID, notAfter: notAfter}
	if c.adds++; c.adds%pruneEvery == 0 {
		c.pruneLocked(time.Now())
	}
}

// replaced forgets a certificate its holder presented to renew.
func (c *issuedCerts) replaced(cert *x509.Certificate) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.live, cert.SerialNumber.Text(16))
}

func (c *issuedCerts) pruneLocked(now time.Time) {
	for k, v := range c.live {
		if !now.Before(v.notAfter) {
			delete(c.live, k)
		}
	}
}

// ChainCount is how many live workload certificates chain to a root and
// came with a trust bundle.
type ChainCount struct {
	Root   string `json:"root"`
	Bundle string `json:"bundle"`
	Count  int    `json:"count"`
}

// counts returns the live certificates by root and bundle.
func (c *issuedCerts) counts(now time.Time) []ChainCount {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pruneLocked(now)
	by := map[[2]string]int{}
	for _, v := range c.live {
		by[[2]string{v.root, v.bundle}]++
	}
	out := make([]ChainCount, 0, len(by))
	for k, n := range by {
		out = append(out, ChainCount{Root: k[0], Bundle: k[1], Count: n})
	}
	return out
}
