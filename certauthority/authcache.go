package certauthority

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"sync"
	"time"
)

// authCacheSize bounds the remembered authentications: about one per live
// connection or token of a busy mesh; past it, the oldest half is forgotten.
const authCacheSize = 4096

// authCache remembers successful authentications by client certificate chain
// or bootstrap token, so a workload that calls again (an xDS stream's calls,
// a renewal on a kept connection) costs no second signature check. Only
// successes are kept. An entry holds only for the trust it was verified
// against (a rotation step or cacerts reload is a miss, and the credential is
// checked again) and only inside the credential's validity window, so it
// never outlives what a full check would accept. Kubernetes tokens are not
// kept: the API server may revoke them at any time.
type authCache struct {
	mu      sync.Mutex
	max     int
	entries map[authKey]*authEntry
	seq     uint64
}

// authKey is the SHA-256 of the credential: a token, or every certificate
// of a presented chain (length-prefixed, so chains cannot collide).
type authKey [sha256.Size]byte

type authEntry struct {
	trust     *trust    // the trust it was verified against
	id        Identity  // the proven identity
	method    string    // AuthClientCert or AuthBootstrapToken
	notBefore time.Time // valid from this instant
	notAfter  time.Time // and before this one
	seq       uint64    // insertion order, for eviction
}

func newAuthCache(max int) *authCache {
	return &authCache{max: max, entries: make(map[authKey]*authEntry)}
}

func tokenKey(token string) authKey {
	h := sha256.New()
	h.Write([]byte("token\x00"))
	h.Write([]byte(token))
	return authKey(h.Sum(nil))
}

func chainKey(certs []*x509.Certificate) authKey {
	h := sha256.New()
	h.Write([]byte("chain\x00"))
	var n [8]byte
	for _, c := range certs {
		binary.BigEndian.PutUint64(n[:], uint64(len(c.Raw)))
		h.Write(n[:])
		h.Write(c.Raw)
	}
	return authKey(h.Sum(nil))
}

// get returns the identity proven for k under t, valid at now.
func (c *authCache) get(k authKey, t *trust, now time.Time) (Identity, string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok {
		return Identity{}, "", false
	}
	if !e.valid(t, now) {
		delete(c.entries, k)
		return Identity{}, "", false
	}
	return e.id, e.method, true
}

func (e *authEntry) valid(t *trust, now time.Time) bool {
	return e.trust == t && !now.Before(e.notBefore) && now.Before(e.notAfter)
}

// put remembers a success. When full it drops what is no longer valid and,
// if that is not enough, the older half.
func (c *authCache) put(k authKey, e authEntry, now time.Time) {
	if !now.Before(e.notAfter) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[k]; !ok && len(c.entries) >= c.max {
		c.evictLocked(e.trust, now)
	}
	c.seq++
	e.seq = c.seq
	c.entries[k] = &e
}

func (c *authCache) evictLocked(t *trust, now time.Time) {
	for k, e := range c.entries {
		if !e.valid(t, now) {
			delete(c.entries, k)
		}
	}
	if len(c.entries) < c.max {
		return
	}
	cut := c.seq - uint64(c.max/2)
	for k, e := range c.entries {
		if e.seq <= cut {
			delete(c.entries, k)
		}
	}
}

// reset forgets everything (the trust changed).
func (c *authCache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.entries)
}

func (c *authCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// chainWindow is when every certificate of chain is valid.
func chainWindow(chain []*x509.Certificate) (notBefore, notAfter time.Time) {
	for i, c := range chain {
		if i == 0 || c.NotBefore.After(notBefore) {
			notBefore = c.NotBefore
		}
		if i == 0 || c.NotAfter.Before(notAfter) {
			notAfter = c.NotAfter
		}
	}
	return notBefore, notAfter
}
