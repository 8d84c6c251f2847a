package certauthority

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ProxyAcks reports, of the connected proxies, how many have ACKed the
// configuration made for trust bundle bundleID (server.Server.TrustBundleAcks).
type ProxyAcks func(bundleID string) (acked, total int)

// SetProxyAcks tells the CA how to learn which proxies ACKed a bundle; until
// it is set no proxy is waited for.
func (ca *CA) SetProxyAcks(f ProxyAcks) {
	ca.watchMu.Lock()
	defer ca.watchMu.Unlock()
	ca.acks = f
}

func (ca *CA) proxyAcks(bundle string) (acked, total int) {
	ca.watchMu.Lock()
	f := ca.acks
	ca.watchMu.Unlock()
	if f == nil {
		return 0, 0
	}
	return f(bundle)
}

// Start re-reads the CA material every Config.ResyncInterval, applying
// what changed (a reloaded cacerts, a rotation step recorded by `ca rotate`
// or another replica), and, while this replica leads (Config.IsLeader),
// moves a rotation under way to its next phase once the current one is
// done. It returns when ctx ends.
func (ca *CA) Start(ctx context.Context) error {
	t := time.NewTicker(ca.cfg.ResyncInterval)
	defer t.Stop()
	lastWarn := ca.cfg.Now()
	for {
		if err := ca.resync(ctx); err != nil && ctx.Err() == nil {
			ca.log.Error("CA material not reloaded", "error", err)
		}
		if ca.cfg.IsLeader() {
			if err := ca.advance(ctx); err != nil && ctx.Err() == nil {
				ca.log.Error("root rotation step failed; retrying", "error", err)
			}
		}
		if now := ca.cfg.Now(); now.Sub(lastWarn) >= 24*time.Hour {
			ca.warnExpiry(ca.trust())
			lastWarn = now
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// advance moves the recorded rotation on when its phase is done.
func (ca *CA) advance(ctx context.Context) error {
	rs, ok := rotationStore(ca.cfg.Store)
	raw := ca.src.Load().record
	if !ok || raw == nil {
		return nil
	}
	r, err := DecodeRotation(raw)
	if err != nil {
		return err
	}
	if p := ca.progress(r); !p.Ready {
		return nil
	}
	now := ca.cfg.Now()
	switch r.Phase {
	case PhaseTrustNew:
		next := r.next(PhaseSignNew, now)
		next.OldValidUntil = now.Add(ca.cfg.MaxCertTTL)
		err = rs.SaveRotation(ctx, raw, next.Encode())
	case PhaseSignNew:
		err = rs.SaveRotation(ctx, raw, r.next(PhaseDropOld, now).Encode())
	case PhaseDropOld:
		err = rs.FinishRotation(ctx, raw, &r.Next)
	}
	if errors.Is(err, ErrConflict) {
		return nil // someone else moved it; the next resync applies theirs
	}
	if err != nil {
		return fmt.Errorf("record the end of phase %s in %s: %w", r.Phase, ca.cfg.Store, err)
	}
	ca.log.Info("root rotation phase done", "phase", string(r.Phase), "took", now.Sub(r.PhaseSince).Round(time.Millisecond))
	return ca.resync(ctx)
}

// Progress is what a rotation phase waits for.
type Progress struct {
	Phase Phase `json:"phase"`
	// Proxies is how many connected proxies there are; ProxiesAcked, how
	// many ACKed the configuration of the current bundle.
	Proxies      int `json:"proxies"`
	ProxiesAcked int `json:"proxiesAcked"`
	// Workloads is how many live certificates this replica issued still lack
	// what the phase needs: the new bundle (trust-new), the new root (sign-new).
	Workloads     int       `json:"workloadsWaiting"`
	OldValidUntil time.Time `json:"oldValidUntil,omitzero"`
	Forced        bool      `json:"forced,omitempty"`
	// Settled is false until every replica has had time to apply the phase
	// (two resync intervals).
	Settled bool   `json:"settled"`
	Ready   bool   `json:"ready"`
	Waiting string `json:"waiting,omitempty"` // what it waits for, in words
}

func (ca *CA) progress(r *Rotation) Progress {
	t, now := ca.trust(), ca.cfg.Now()
	p := Progress{Phase: r.Phase, OldValidUntil: r.OldValidUntil, Forced: r.Force,
		Settled: now.Sub(r.PhaseSince) >= 2*ca.cfg.ResyncInterval && t.phase == r.Phase}
	p.ProxiesAcked, p.Proxies = ca.proxyAcks(t.bundleID)
	proxiesDone := p.ProxiesAcked >= p.Proxies
	for _, c := range ca.issued.counts(now) {
		switch {
		case r.Phase == PhaseTrustNew && c.Bundle != t.bundleID:
			p.Workloads += c.Count
		case r.Phase == PhaseSignNew && c.Root != rootID(t.signer.root):
			p.Workloads += c.Count
		}
	}
	switch r.Phase {
	case PhaseTrustNew:
		p.Ready = p.Settled && proxiesDone && p.Workloads == 0
		p.Waiting = fmt.Sprintf("proxies to ACK the new bundle (%d/%d), workloads to get it (%d left)", p.ProxiesAcked, p.Proxies, p.Workloads)
	case PhaseSignNew:
		p.Ready = p.Settled && (r.Force || !now.Before(r.OldValidUntil) || p.Workloads == 0)
		p.Waiting = fmt.Sprintf("workloads to renew under the new root (%d left) or the old root's certificates to expire (%s)",
			p.Workloads, r.OldValidUntil.UTC().Format(time.RFC3339))
	case PhaseDropOld:
		p.Ready = p.Settled && proxiesDone
		p.Waiting = fmt.Sprintf("proxies to ACK the bundle without the old root (%d/%d)", p.ProxiesAcked, p.Proxies)
	}
	return p
}

// Status is the CA's state for `controlplane ca status` and /debug/ca.
type Status struct {
	Bundle        string       `json:"bundle"`
	Roots         []Root       `json:"roots"`
	SignerSubject string       `json:"signerSubject"`
	SignerExpiry  time.Time    `json:"signerExpiry"`
	Plugged       bool         `json:"plugged"`
	Leader        bool         `json:"leader"`
	Workloads     []ChainCount `json:"workloads"` // live certificates this replica issued, by root and bundle
	Rotation      *Progress    `json:"rotation,omitempty"`
}

// Status reports the trust bundle, the signer, the live certificates by
// chain and the rotation under way.
func (ca *CA) Status() Status {
	t := ca.trust()
	st := Status{Bundle: t.bundleID, Roots: t.rootList(), SignerSubject: t.signer.cert.Subject.String(),
		SignerExpiry: t.signer.cert.NotAfter, Plugged: t.signer.plugged, Leader: ca.cfg.IsLeader(),
		Workloads: ca.issued.counts(ca.cfg.Now())}
	if rec := ca.src.Load().record; rec != nil {
		if r, err := DecodeRotation(rec); err == nil {
			p := ca.progress(r)
			st.Rotation = &p
		}
	}
	return st
}
