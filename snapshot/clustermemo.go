package snapshot

import (
	"slices"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/librarymesh/controlplane/meshname"
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

// builtListeners are a service port's captured outbound listeners, and
// builtVirtualHost its virtual host, memoized as builtCluster is. They are
// kept only when no VirtualService applies to the service (routes then
// depend on other services too) and, for listeners, when none of the
// port's routes injects faults and the service has addresses (a wildcard
// listener is shared with other services); so the service, its rule and,
// for a virtual host, its domains (a domain goes to the first service on
// the port that claims it) are all they are made from.
type builtListeners struct {
	listeners []*listenerv3.Listener
	svc       *registry.Service
	dr        *registry.DestinationRule
}

type builtVirtualHost struct {
	vhost   *routev3.VirtualHost
	svc     *registry.Service
	dr      *registry.DestinationRule
	domains []string
}

// servicePortKey names a service port for proxies in ns; flag tells a
// virtual host over VHDS, or a loopback listener, from the others.
func servicePortKey(ns, host string, port uint32, flag bool) string {
	return ns + "\x00" + host + "\x00" + strconv.FormatUint(uint64(port), 10) + "\x00" + strconv.FormatBool(flag)
}

// serviceListenersLocked are the outbound listeners of a service port,
// built for target: the service itself (captured), or a copy bound on its
// loopback address. They come from the memo when they stand.
func (b *Builder) serviceListenersLocked(vc *vsContext, sc *scope, svc, target *registry.Service, port registry.Port, loopback bool) []*listenerv3.Listener {
	plain := vc.virtualService(svc.Hostname) == nil && (port.Protocol.IsHTTP() && vc.httpFilters(port.Number) == nil || !port.Protocol.IsHTTP() && len(target.Addresses) > 0)
	dr := b.destinationRuleLocked(sc.ns, svc)
	key := servicePortKey(sc.ns, svc.Hostname, port.Number, loopback)
	if m, ok := b.listeners[key]; ok && plain && m.svc == svc && m.dr == dr {
		return m.listeners
	}
	ls := vc.listeners(target, port, outboundListeners(target, port, b.tcpHashPoliciesLocked(sc.ns, svc, port.Number), loopback))
	if plain {
		b.listeners[key] = &builtListeners{listeners: ls, svc: svc, dr: dr}
	}
	return ls
}

// outboundVirtualHostLocked is a service port's virtual host for the
// scope's proxies, from the memo when it stands.
func (b *Builder) outboundVirtualHostLocked(vc *vsContext, sc *scope, svc *registry.Service, port registry.Port, domains []string) *routev3.VirtualHost {
	plain := vc.virtualService(svc.Hostname) == nil
	dr := b.destinationRuleLocked(sc.ns, svc)
	key := servicePortKey(sc.ns, svc.Hostname, port.Number, sc.vhds)
	if m, ok := b.vhosts[key]; ok && plain && m.svc == svc && m.dr == dr && slices.Equal(m.domains, domains) {
		return m.vhost
	}
	vh := VirtualHost(sc.outboundVirtualHostName(svc.Hostname, port.Number), domains,
		vc.httpRoutes(svc, port, withHashPolicy(RouteToCluster(meshname.DefaultRoute, meshname.OutboundCluster(port.Number, "", svc.Hostname)),
			b.hashPoliciesLocked(sc.ns, svc, port.Number, "")))...)
	if plain {
		b.vhosts[key] = &builtVirtualHost{vhost: vh, svc: svc, dr: dr, domains: domains}
	}
	return vh
}

// carryOverServicePortsLocked gives next the listeners and virtual hosts b
// built for hosts other than changed (each is checked again when used).
func (b *Builder) carryOverServicePortsLocked(next *Builder, changed map[string]bool) {
	next.listeners = make(map[string]*builtListeners, len(b.listeners))
	for key, m := range b.listeners {
		if !changed[m.svc.Hostname] {
			next.listeners[key] = m
			for _, l := range m.listeners {
				next.keepValid(b, l)
			}
		}
	}
	next.vhosts = make(map[string]*builtVirtualHost, len(b.vhosts))
	for key, m := range b.vhosts {
		if !changed[m.svc.Hostname] {
			next.vhosts[key] = m
			next.keepValid(b, m.vhost)
		}
	}
}

// handOverMemosLocked moves what b memoized across proxies (assignments,
// the service ports' clusters, listeners and virtual hosts, and which
// protos passed validation) to next, leaving b empty memos: b still builds
// correctly, only without them. Entries stand for next as long as the
// checks made when they are used pass; the caller drops what it knows
// changed.
func (b *Builder) handOverMemosLocked(next *Builder) {
	next.cla, next.claSrc, next.clusters, next.listeners, next.vhosts, next.valid = b.cla, b.claSrc, b.clusters, b.listeners, b.vhosts, b.valid
	b.cla, b.claSrc = map[string]*endpointv3.ClusterLoadAssignment{}, map[string]claSource{}
	b.clusters, b.listeners, b.vhosts = map[string]*builtCluster{}, map[string]*builtListeners{}, map[string]*builtVirtualHost{}
	b.valid = map[types.Resource]struct{}{}
}
