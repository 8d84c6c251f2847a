package snapshot

import (
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/librarymesh/controlplane/registry"
)

// WithServiceChanges returns the Builder of view after a change of
// services (definitions and endpoints, not policy: the caller knows) that
// touched hosts. The shared parts are built again, since every sidecar sees
// every service, but from the clusters and assignments b made for other
// hosts (the same protos, already validated; see builtCluster). A proxy's
// own part (its inbound side) is carried over when
// the change cannot reach it: none of its addresses is an endpoint of a
// changed host, before or after, and its workloads are the same. A new
// service then costs each unrelated proxy its shared part only, and its
// own part keeps its protos (so their versions and encodings are reused).
func (b *Builder) WithServiceChanges(view registry.View, opts Options, hosts []string) *Builder {
	next := NewBuilder(view, opts)
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.problems) > 0 || b.opts != next.opts { // something was left out, or the options differ: build it all again
		return next
	}
	changed := hostSet(hosts)
	next.valid = make(map[types.Resource]struct{}, len(b.valid))
	b.carryOverClustersLocked(next, changed)
	b.carryOverAssignmentsLocked(next, changed)
	b.carryOverServicePortsLocked(next, changed)
	affected := map[string]bool{}
	for _, h := range hosts {
		for _, v := range []registry.View{b.view, view} {
			for _, ep := range v.Endpoints(h) {
				affected[ep.Address] = true
			}
		}
	}
	next.owns = map[string]*Resources{}
	for key, r := range b.results {
		if r.own != nil && unaffected(r, affected, view) {
			next.owns[key] = r.own
		}
	}
	return next
}

// ownPart returns the own part carried over for a proxy (see
// WithServiceChanges), or builds it.
func (b *Builder) ownPart(key string, build func() (*Resources, error)) (*Resources, error) {
	if own, ok := b.owns[key]; ok {
		return own, nil
	}
	return build()
}

func hostSet(hosts []string) map[string]bool {
	m := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		m[h] = true
	}
	return m
}
