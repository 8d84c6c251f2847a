package snapshot

import (
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/librarymesh/controlplane/registry"
)

// builtCluster is a cluster serviceClusterLocked made, with what it was
// made from besides its key: the service, the DestinationRule that applied
// and the host's endpoints (a DNS cluster holds them, and TLS names may come
// from them). The registry keeps an unchanged service's pointer and an
// unchanged host's endpoint list, so a carried-over cluster is checked by
// pointer alone.
type builtCluster struct {
	cluster *clusterv3.Cluster
	eds     bool // its endpoints come over EDS (see loadAssignmentLocked)
	svc     *registry.Service
	dr      *registry.DestinationRule
	eps     endpointsID
}

// stands reports whether the cluster is still the one made from svc, dr
// and the endpoints eps.
func (m *builtCluster) stands(svc *registry.Service, dr *registry.DestinationRule, eps endpointsID) bool {
	return m.svc == svc && m.dr == dr && m.eps == eps
}

// endpointsID identifies a host's endpoint list in a view: the registry
// never changes a list in place, so the same first element and length are
// the same endpoints.
type endpointsID struct {
	first **registry.Endpoint
	n     int
}

func endpointsOf(eps []*registry.Endpoint) endpointsID {
	if len(eps) == 0 {
		return endpointsID{}
	}
	return endpointsID{first: &eps[0], n: len(eps)}
}

// clusterKey names everything a service cluster is built from besides its
// service, rule and endpoints (see builtCluster): the kind of client, the
// proxy's namespace (which picks the rule and its TLS), the cluster and
// subset (with its labels), and under a locality rule the client's view.
func clusterKey(f clusterFlavor, ns, name string, subset *registry.Subset, loc *localityRule, c client, priorityLabels []string) string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(int(f)))
	b.WriteByte(0)
	b.WriteString(ns)
	b.WriteByte(0)
	b.WriteString(claKey(name, subset))
	if loc != nil {
		b.WriteString("\x00@" + loc.key() + "\x00" + c.key(priorityLabels))
	}
	return b.String()
}

// carryOverClustersLocked gives next the clusters b built for hosts other
// than changed whose service and endpoints next's view still has, and
// remembers which of them passed validation.
func (b *Builder) carryOverClustersLocked(next *Builder, changed map[string]bool) {
	next.clusters = make(map[string]*builtCluster, len(b.clusters))
	for key, m := range b.clusters {
		h := m.svc.Hostname
		if changed[h] || !m.stands(next.view.Service(h), m.dr, endpointsOf(next.view.Endpoints(h))) {
			continue
		}
		next.clusters[key] = m
		next.keepValid(b, m.cluster)
	}
}

// carryOverAssignmentsLocked gives next the shared assignments b built for
// hosts other than changed whose endpoints next's view still has.
func (b *Builder) carryOverAssignmentsLocked(next *Builder, changed map[string]bool) {
	next.cla = make(map[string]*endpointv3.ClusterLoadAssignment, len(b.cla))
	next.claSrc = make(map[string]claSource, len(b.claSrc))
	for key, src := range b.claSrc {
		if changed[src.host] || next.view.Service(src.host) == nil || endpointsOf(next.view.Endpoints(src.host)) != src.eps {
			continue
		}
		next.cla[key], next.claSrc[key] = b.cla[key], src
		next.keepValid(b, b.cla[key])
	}
}

// keepValid marks r valid in b when it was in from (see Builder.valid).
func (b *Builder) keepValid(from *Builder, r types.Resource) {
	if _, ok := from.valid[r]; ok {
		b.valid[r] = struct{}{}
	}
}
