package server

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/librarymesh/controlplane/registry"
	"github.com/librarymesh/controlplane/snapshot"
)

// pusher builds the connections' snapshots: one when a proxy connects, and
// the affected ones after each (debounced) registry change. Builds happen
// one at a time under mu, so a proxy that connects during a rebuild is
// built from the view the rebuild uses or a newer one. It also holds the
// set of open connections.
type pusher struct {
	log     *slog.Logger
	reg     Registry
	newB    NewBuilderFunc
	opts    snapshot.Options
	metrics *metrics
	diffs   *diffCache       // rotated with each rebuild
	secrets SecretAuthorizer // nil: no gateway credentials are sent

	mu      sync.Mutex
	view    registry.View
	builder Builder
	hashes  *hasher
	checked *generations[[2]*snapshot.Resources, error] // Consistent() of (shared, own) parts

	wakes *waker // of a rebuild's streams

	connsMu sync.Mutex
	conns   map[*conn]struct{}
	sorted  []*conn // conns ordered by ID, nil when one came or went since
}

func newPusher(cfg *Config, m *metrics, diffs *diffCache) *pusher {
	p := &pusher{
		log: cfg.Logger, reg: cfg.Registry, newB: cfg.NewBuilder, opts: cfg.SnapshotOptions,
		metrics: m, diffs: diffs, hashes: newHasher(), conns: map[*conn]struct{}{}, secrets: cfg.SecretAuthorizer, wakes: newWaker(),
		checked: newGenerations[[2]*snapshot.Resources, error](),
	}
	p.view = p.reg.View()
	p.builder = p.newB(p.view, p.opts)
	return p
}

// connect classifies a new connection, builds its first snapshot from the
// current view and adds it to the set the rebuilds walk.
func (p *pusher) connect(c *conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c.kind = p.builder.Kind(c.proxy)
	p.metrics.proxies.WithLabelValues(c.kind).Inc()
	p.buildLocked(c, time.Time{})
	p.connsMu.Lock()
	p.conns[c] = struct{}{}
	p.sorted = nil
	p.connsMu.Unlock()
}

// disconnect drops a connection whose stream ended.
func (p *pusher) disconnect(c *conn) {
	p.connsMu.Lock()
	delete(p.conns, c)
	p.sorted = nil
	p.connsMu.Unlock()
	c.mu.Lock()
	c.closed = true
	kind := c.kind
	c.mu.Unlock()
	p.metrics.proxies.WithLabelValues(kind).Dec()
}

// connections returns the open connections, ordered by ID. The slice is
// shared until a connection comes or goes (each push walks it, and sorting
// a thousand IDs each time cost a few percent of an endpoint change's
// rebuild): callers do not change it.
func (p *pusher) connections() []*conn {
	p.connsMu.Lock()
	defer p.connsMu.Unlock()
	if p.sorted == nil {
		p.sorted = make([]*conn, 0, len(p.conns))
		for c := range p.conns {
			p.sorted = append(p.sorted, c)
		}
		slices.SortFunc(p.sorted, func(a, b *conn) int { return cmp.Compare(a.id, b.id) })
	}
	return p.sorted
}

// buildLocked builds c's snapshot, classifies c again (its kind moves with
// the model) and sets the snapshot if any type's version changed. since is
// when the change being pushed was observed (zero for a first build). It
// reports whether the snapshot changed.
func (p *pusher) buildLocked(c *conn, since time.Time) bool {
	start := time.Now()
	kind, shared, own, err := buildKindParts(p.builder, c.proxy)
	p.reclassifyLocked(c, kind)
	if err == nil {
		shared, own = p.authorizeSecrets(c, shared, own)
		err = p.consistentLocked(c, shared, own)
	}
	p.metrics.builds.Inc()
	p.metrics.buildSeconds.Observe(time.Since(start).Seconds())
	if err == nil {
		var snap *nodeSnapshot
		if snap, err = newNodeSnapshot(p.hashes, shared, own, c.built); err == nil {
			c.mu.Lock()
			c.trustBundle = p.opts.TrustBundle
			c.mu.Unlock()
			c.built = built{parts: [2]*snapshot.Resources{shared, own}, snap: snap}
			return p.setLocked(c, snap, since)
		}
	}
	p.metrics.buildErrors.Inc()
	c.mu.Lock()
	repeated := c.buildErr != nil && c.buildErr.Error() == err.Error()
	c.buildErr = err
	c.mu.Unlock()
	if !repeated {
		p.log.Error("building snapshot failed; the proxy keeps its last config", "conn", c.id, "error", err)
	}
	return false
}

// setLocked hands snap to the connection if it differs from the last.
func (p *pusher) setLocked(c *conn, snap *nodeSnapshot, since time.Time) bool {
	old := c.snapshot()
	var changed typeValues // new versions by typeIndex
	for i, ts := range snap.types {
		if old == nil || old.types[i].version != ts.version {
			changed[i] = ts.version
		}
	}
	if changed.empty() {
		c.mu.Lock()
		c.buildErr = nil
		c.mu.Unlock()
		return false
	}
	c.setSnapshot(snap, changed, since)
	p.wakes.wake(c)
	return true
}

// consistentLocked reports a listener or cluster of a proxy's parts that
// names a route configuration or endpoint set they lack. A shared part, and
// an own part with its shared part, is checked once per rebuild, however
// many proxies it is given to, and only in what changed since the parts
// c's last snapshot was built from, found consistent then (after an
// endpoint-only change, only the endpoints' names).
func (p *pusher) consistentLocked(c *conn, shared, own *snapshot.Resources) error {
	prev := c.built.parts
	err, ok := p.checked.get([2]*snapshot.Resources{shared, nil})
	if !ok {
		err = shared.ConsistentSince(nil, prev[0], nil)
		p.checked.put([2]*snapshot.Resources{shared, nil}, err)
	}
	if err == nil && own != nil {
		k := [2]*snapshot.Resources{shared, own}
		if err, ok = p.checked.get(k); !ok {
			err = own.ConsistentSince(shared, prev[1], prev[0])
			p.checked.put(k, err)
		}
	}
	if err != nil {
		return fmt.Errorf("inconsistent snapshot: %w", err)
	}
	return nil
}

// buildKindParts builds a proxy's resources as the part shared with other
// proxies and its own part (nil when the Builder does not split them), with
// the proxy's kind when the Builder names it with the parts ("" when it
// does not, or on an error).
func buildKindParts(b Builder, px *snapshot.Proxy) (kind string, shared, own *snapshot.Resources, err error) {
	switch pb := b.(type) {
	case kindPartsBuilder:
		return pb.BuildKindParts(px)
	case PartsBuilder:
		shared, own, err = pb.BuildParts(px)
		return "", shared, own, err
	}
	shared, err = b.Build(px)
	return "", shared, nil, err
}

// rebuild moves to the registry's current view and rebuilds the
// connections the changes since the last view affect. It returns how many
// were rebuilt and how many got a new snapshot.
func (p *pusher) rebuild(since time.Time) (built, changed int) {
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
	p.checked.rotate()
	p.diffs.rotate()
	for _, c := range p.connections() {
		if !affected.matches(c) {
			continue
		}
		built++
		if p.buildLocked(c, since) {
			changed++
		}
	}
	return built, changed
}

// reclassifyLocked updates a connection's kind after a model change to
// kind, or to what the Builder says when kind is "".
func (p *pusher) reclassifyLocked(c *conn, kind string) {
	if kind == "" {
		kind = p.builder.Kind(c.proxy)
	}
	c.mu.Lock()
	old := c.kind
	c.kind = kind
	closed := c.closed
	c.mu.Unlock()
	if kind == old || closed {
		return
	}
	p.metrics.proxies.WithLabelValues(old).Dec()
	p.metrics.proxies.WithLabelValues(kind).Inc()
}

// revision returns the model revision of the current view.
func (p *pusher) revision() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.view.Revision()
}

// builderProblems are the registry.Problems the current Builder reported
// (policy it enforces differently than written), when it reports any.
func (p *pusher) builderProblems() []registry.Problem {
	p.mu.Lock()
	b, ok := p.builder.(interface{ Problems() []error })
	p.mu.Unlock()
	if !ok {
		return nil
	}
	var out []registry.Problem
	for _, err := range b.Problems() {
		var pr registry.Problem
		if errors.As(err, &pr) {
			out = append(out, pr)
		}
	}
	return out
}
