package certauthority

import (
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Default rate limits of CreateCertificate. A workload asks about once a day (renewal at
// half of a 24 h certificate), so 10 per second per identity with a burst of 20 leaves
// room for a whole Deployment's pods sharing one service account restarting at once.
const (
	DefaultIdentityRate  = 10
	DefaultIdentityBurst = 20
	DefaultGlobalRate    = 200
	DefaultGlobalBurst   = 400
)

// Limits are token buckets on CreateCertificate. The global bucket is taken before the
// caller is authenticated, so a flood of bad credentials cannot keep the CA (and the
// Kubernetes API server behind TokenReview) busy; the identity bucket is taken once the
// caller is proven, before the CSR is parsed or signed. A rate of 0 means no limit.
// A refused call gets ResourceExhausted.
type Limits struct {
	IdentityRate  float64 // calls per second per proven identity (namespace/service account)
	IdentityBurst int
	GlobalRate    float64 // calls per second over all callers
	GlobalBurst   int
}

// DefaultLimits are 10/s (burst 20) per identity and 200/s (burst 400) in all.
func DefaultLimits() *Limits {
	return &Limits{IdentityRate: DefaultIdentityRate, IdentityBurst: DefaultIdentityBurst,
		GlobalRate: DefaultGlobalRate, GlobalBurst: DefaultGlobalBurst}
}

// NoLimits turns both limits off.
func NoLimits() *Limits { return &Limits{} }

func (l *Limits) validate() error {
	for _, b := range []struct {
		name  string
		rate  float64
		burst int
	}{{"identity", l.IdentityRate, l.IdentityBurst}, {"global", l.GlobalRate, l.GlobalBurst}} {
		switch {
		case b.rate < 0:
			return fmt.Errorf("certauthority: %s rate limit %g is negative (0 means no limit)", b.name, b.rate)
		case b.rate > 0 && b.burst < 1:
			return fmt.Errorf("certauthority: %s rate limit %g/s needs a burst of at least 1, got %d", b.name, b.rate, b.burst)
		}
	}
	return nil
}

// Limiter scopes (the "scope" metric label).
const (
	scopeIdentity = "identity"
	scopeGlobal   = "global"
)

// sweepAbove is the number of identity buckets above which idle ones are dropped.
const sweepAbove = 1024

// limiter holds the global bucket and one bucket per identity. A bucket idle for as long
// as it takes to refill is full again, so dropping it changes nothing: the map stays
// bounded by the identities active within one refill time.
type limiter struct {
	global  *rate.Limiter // nil: no limit
	idRate  rate.Limit    // 0: no limit
	idBurst int
	refill  time.Duration // time an empty identity bucket takes to fill

	mu        sync.Mutex
	perID     map[Identity]*idBucket
	lastSweep time.Time
}

type idBucket struct {
	lim  *rate.Limiter
	last time.Time
}

func newLimiter(l *Limits) *limiter {
	lim := &limiter{perID: map[Identity]*idBucket{}}
	if l.GlobalRate > 0 {
		lim.global = rate.NewLimiter(rate.Limit(l.GlobalRate), l.GlobalBurst)
	}
	if l.IdentityRate > 0 {
		lim.idRate, lim.idBurst = rate.Limit(l.IdentityRate), l.IdentityBurst
		lim.refill = time.Duration(float64(l.IdentityBurst) / l.IdentityRate * float64(time.Second))
	}
	return lim
}

// allowGlobal takes one token from the global bucket.
func (l *limiter) allowGlobal(now time.Time) bool {
	return l.global == nil || l.global.AllowN(now, 1)
}

// allowIdentity takes one token from id's bucket.
func (l *limiter) allowIdentity(id Identity, now time.Time) bool {
	if l.idRate == 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.perID[id]
	if b == nil {
		l.sweepLocked(now)
		b = &idBucket{lim: rate.NewLimiter(l.idRate, l.idBurst)}
		l.perID[id] = b
	}
	b.last = now
	return b.lim.AllowN(now, 1)
}

// sweepLocked drops the buckets idle for a refill time, at most once per refill time and
// only when there are many.
func (l *limiter) sweepLocked(now time.Time) {
	if len(l.perID) < sweepAbove || now.Sub(l.lastSweep) < l.refill {
		return
	}
	l.lastSweep = now
	for id, b := range l.perID {
		if now.Sub(b.last) >= l.refill {
			delete(l.perID, id)
		}
	}
}
