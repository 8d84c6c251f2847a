package server

import (
	"maps"
	"slices"

	"github.com/librarymesh/controlplane/registry"
	"github.com/librarymesh/controlplane/snapshot"
)

// EndpointUpdater is a Builder that can move to the next model revision
// when only the endpoints of some hosts changed, keeping everything else it
// built (the same protos, so content versions and the marshaled bytes stay
// shared). The snapshot package's Builder is one.
type EndpointUpdater interface {
	Builder
	WithEndpointChanges(v registry.View, hosts []string) Builder
}

// WithEndpointChanges carries the Builder over to view (see
// snapshot.Builder.WithEndpointChanges).
func (b snapshotBuilder) WithEndpointChanges(v registry.View, hosts []string) Builder {
	return snapshotBuilder{b.Builder.WithEndpointChanges(v, hosts)}
}

// nextBuilder returns the Builder for view: for an endpoints-only change
// the current one carried over (only the changed assignments are rebuilt),
// otherwise a fresh one.
func (p *pusher) nextBuilder(view registry.View, a affected) Builder {
	if u, ok := p.builder.(EndpointUpdater); ok && !a.all && len(a.endpoints) > 0 {
		return u.WithEndpointChanges(view, slices.Sorted(maps.Keys(a.endpoints)))
	}
	if u, ok := p.builder.(ServiceUpdater); ok && a.all && len(a.services) > 0 {
		return u.WithServiceChanges(view, p.opts, slices.Sorted(maps.Keys(a.services)))
	}
	return p.newB(view, p.opts)
}

// ServiceUpdater is a Builder that can move to the next model revision
// after services changed (no policy), keeping the own parts of proxies the
// change cannot reach. The snapshot package's Builder is one.
type ServiceUpdater interface {
	Builder
	WithServiceChanges(v registry.View, opts snapshot.Options, hosts []string) Builder
}

// WithServiceChanges carries the Builder over to view (see
// snapshot.Builder.WithServiceChanges).
func (b snapshotBuilder) WithServiceChanges(v registry.View, opts snapshot.Options, hosts []string) Builder {
	return snapshotBuilder{b.Builder.WithServiceChanges(v, opts, hosts)}
}
