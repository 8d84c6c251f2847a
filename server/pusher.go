package server

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/librarymesh/controlplane/registry"
	"github.com/librarymesh/controlplane/snapshot"
)

// pusher owns the proxies' snapshots: it builds one when a proxy connects
// and rebuilds the affected ones after each (debounced) registry change.
// All builds happen under mu, so a proxy that connects during a rebuild is
// built from the view the rebuild uses or a newer one.
type pusher struct {
	log     *slog.Logger
	reg     Registry
	newB    NewBuilderFunc
	opts    snapshot.Options
	cache   snapshotSetter
	metrics *metrics
	conv    *convergence
	sent    func(nodeID string) uint8 // types the node was ever sent, a bit per typeIndex

	mu      sync.Mutex
	view    registry.View
	builder Builder
	hashes  *hasher
	proxies map[string]*proxyEntry
}

// snapshotSetter is where snapshots go (the ADS streams).
type snapshotSetter interface {
	SetSnapshot(ctx context.Context, nodeID string, s *nodeSnapshot) error
	ClearSnapshot(nodeID string)
	// Rotate is called once per rebuild, before its snapshots are set.
	Rotate()
}

// proxyEntry is a connected proxy and the snapshot it was last given.
type proxyEntry struct {
	proxy *snapshot.Proxy
	kind  string
	snap  *nodeSnapshot
	err   error // last build error
}

func newPusher(cfg *Config, c snapshotSetter, m *metrics, conv *convergence) *pusher {
	p := &pusher{
		log: cfg.Logger, reg: cfg.Registry, newB: cfg.NewBuilder, opts: cfg.SnapshotOptions,
		cache: c, metrics: m, conv: conv, hashes: newHasher(), proxies: map[string]*proxyEntry{},
	}
	p.view = p.reg.View()
	p.builder = p.newB(p.view, p.opts)
	return p
}

// connect builds the snapshot of a newly connected proxy from the current
// view and returns its kind.
func (p *pusher) connect(ctx context.Context, px *snapshot.Proxy) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := &proxyEntry{proxy: px, kind: p.builder.Kind(px)}
	p.proxies[px.ID] = e
	p.metrics.proxies.WithLabelValues(e.kind).Inc()
	p.buildLocked(ctx, e, time.Time{})
	return e.kind
}

// disconnect forgets a proxy whose last stream closed.
func (p *pusher) disconnect(nodeID string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.proxies[nodeID]
	if !ok {
		return
	}
	delete(p.proxies, nodeID)
	p.metrics.proxies.WithLabelValues(e.kind).Dec()
	p.cache.ClearSnapshot(nodeID)
}

// buildLocked builds e's snapshot and sets it in the cache if any type's
// version changed. since is when the change being pushed was observed (zero
// for a first build). It reports whether the snapshot changed.
func (p *pusher) buildLocked(ctx context.Context, e *proxyEntry, since time.Time) bool {
	start := time.Now()
	shared, own, err := buildParts(p.builder, e.proxy)
	p.metrics.builds.Inc()
	p.metrics.buildSeconds.Observe(time.Since(start).Seconds())
	if err == nil {
		var snap *nodeSnapshot
		if snap, err = newNodeSnapshot(p.hashes, shared, own); err == nil {
			return p.setLocked(ctx, e, snap, since)
		}
	}
	p.metrics.buildErrors.Inc()
	if e.err == nil || e.err.Error() != err.Error() {
		p.log.Error("building snapshot failed; the proxy keeps its last config", "node", e.proxy.ID, "error", err)
	}
	e.err = err
	return false
}

func (p *pusher) setLocked(ctx context.Context, e *proxyEntry, snap *nodeSnapshot, since time.Time) bool {
	e.err = nil
	var changed typeValues // new versions by typeIndex
	for i, ts := range snap.types {
		if e.snap == nil || e.snap.types[i].version != ts.version {
			changed[i] = ts.version
		}
	}
	if changed.empty() {
		return false
	}
	e.snap = snap
	if !since.IsZero() {
		// Before SetSnapshot: the ACK may come back before it returns.
		// A type the proxy was never sent is not waited for.
		sent := p.sent(e.proxy.ID)
		for i := range changed {
			if sent&(1<<i) == 0 {
				changed[i] = ""
			}
		}
		p.conv.pushed(e.proxy.ID, since, changed)
	}
	if err := p.cache.SetSnapshot(ctx, e.proxy.ID, snap); err != nil {
		p.log.Error("setting snapshot failed", "node", e.proxy.ID, "error", err)
		return false
	}
	return true
}

// buildParts builds a proxy's resources as the part shared with other
// proxies and its own part (nil when the Builder does not split them).
func buildParts(b Builder, px *snapshot.Proxy) (shared, own *snapshot.Resources, err error) {
	if pb, ok := b.(PartsBuilder); ok {
		return pb.BuildParts(px)
	}
	shared, err = b.Build(px)
	return shared, nil, err
}

// rebuild moves to the registry's current view and rebuilds the proxies
// the changes since the last view affect. It returns how many proxies were
// rebuilt and how many got a new snapshot.
func (p *pusher) rebuild(ctx context.Context, since time.Time) (built, changed int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	view := p.reg.View()
	if view.Revision() == p.view.Revision() {
		return 0, 0
	}
	affected := affectedBy(p.reg.ChangesSince(p.view.Revision()))
	affected.addIPs(p.view)
	affected.addIPs(view)
	p.view, p.builder = view, p.nextBuilder(view, affected)
	p.hashes.rotate()
	p.cache.Rotate()
	for _, e := range p.proxies {
		if !affected.matches(e) {
			continue
		}
		if kind := p.builder.Kind(e.proxy); kind != e.kind {
			p.metrics.proxies.WithLabelValues(e.kind).Dec()
			p.metrics.proxies.WithLabelValues(kind).Inc()
			e.kind = kind
		}
		built++
		if p.buildLocked(ctx, e, since) {
			changed++
		}
	}
	return built, changed
}

// proxySnapshot returns the snapshot last set for a node, its kind and
// its last build error; ok is false if the node is not connected.
func (p *pusher) proxySnapshot(nodeID string) (snap *nodeSnapshot, kind string, buildErr error, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.proxies[nodeID]
	if !ok {
		return nil, "", nil, false
	}
	return e.snap, e.kind, e.err, true
}

// revision returns the model revision of the current view.
func (p *pusher) revision() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.view.Revision()
}
