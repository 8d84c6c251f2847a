package snapshot

import (
	"maps"
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/librarymesh/controlplane/meshname"
	"github.com/librarymesh/controlplane/registry"
)

// clusterFlavor is the kind of client a cluster is built for.
type clusterFlavor int

const (
	envoyClusters clusterFlavor = iota // Envoy sidecars (pods and VMs)
	grpcClusters                       // proxyless gRPC (EDS only, certificate providers)
)

// outboundClustersLocked are a service port's clusters for proxies of the
// scope: the default `outbound|PORT||HOST` first, then one per subset of the
// DestinationRule that applies, each with its assignment when it comes
// over EDS (nil otherwise).
func (b *Builder) outboundClustersLocked(sc *scope, svc *registry.Service, port registry.Port, f clusterFlavor) (clusters, clas []types.Resource) {
	dr := b.destinationRuleLocked(sc.ns, svc)
	add := func(subset *registry.Subset) {
		c, cla := b.serviceClusterLocked(sc, svc, port, dr, subset, f)
		clusters = append(clusters, c)
		if cla != nil {
			clas = append(clas, cla)
		}
	}
	add(nil)
	if dr != nil {
		for i := range dr.Subsets {
			add(&dr.Subsets[i])
		}
	}
	return clusters, clas
}

// destinationRuleLocked is DestinationRuleFor a proxy in ns and svc,
// memoized for the Builder (every cluster, route and listener of a
// service port asks for it).
func (b *Builder) destinationRuleLocked(ns string, svc *registry.Service) *registry.DestinationRule {
	key := ns + "\x00" + svc.Hostname
	if dr, ok := b.rules[key]; ok {
		return dr
	}
	if b.rules == nil {
		b.rules = map[string]*registry.DestinationRule{}
	}
	dr := DestinationRuleFor(b.view.DestinationRules(), b.opts.RootNamespace, ns, svc)
	b.rules[key] = dr
	return dr
}

// serviceClusterLocked is one cluster of a service port for the scope's
// proxies: the whole service (subset nil) or one subset, shaped by the
// DestinationRule dr (nil for none); its endpoints are seen from the
// scope's client when a locality rule applies.
//
// Clusters are memoized (see builtCluster): proxies of every scope of a
// namespace, SotW and delta, share one proto per cluster, and
// WithServiceChanges carries those of unchanged hosts over.
func (b *Builder) serviceClusterLocked(sc *scope, svc *registry.Service, port registry.Port, dr *registry.DestinationRule, subset *registry.Subset, f clusterFlavor) (*clusterv3.Cluster, *endpointv3.ClusterLoadAssignment) {
	ns := sc.ns
	name := meshname.OutboundCluster(port.Number, subsetName(subset), svc.Hostname)
	pol := clusterPolicy(dr, subset, port.Number)
	loc := localityRuleFor(pol)
	key := clusterKey(f, ns, name, subset, loc, sc.client, b.priorityLabels)
	eps := endpointsOf(b.view.Endpoints(svc.Hostname))
	if m, ok := b.clusters[key]; ok && m.stands(svc, dr, eps) {
		var cla *endpointv3.ClusterLoadAssignment
		if m.eds {
			cla = b.loadAssignmentLocked(svc, port, subset, loc, sc.client)
		}
		return m.cluster, cla
	}
	c, cla := b.newServiceClusterLocked(sc, svc, port, pol, loc, subset, f, name)
	b.clusters[key] = &builtCluster{cluster: c, eds: cla != nil, svc: svc, dr: dr, eps: eps}
	return c, cla
}

// newServiceClusterLocked builds what serviceClusterLocked returns, under
// the DestinationRule's policy pol for the cluster and its locality rule loc.
func (b *Builder) newServiceClusterLocked(sc *scope, svc *registry.Service, port registry.Port, pol registry.TrafficPolicy, loc *localityRule, subset *registry.Subset, f clusterFlavor, name string) (*clusterv3.Cluster, *endpointv3.ClusterLoadAssignment) {
	ns := sc.ns
	o := clusterOptions{HTTP2: f == envoyClusters && port.Protocol.IsHTTP2()}
	o.TLS = b.clusterTransportSocket(ns, svc, port, subsetName(subset), pol.TLS, f)
	b.applyAutoMTLS(&o, svc, port, pol.TLS, subset, f)
	o.Metadata = b.clusterTrust(o)
	var c *clusterv3.Cluster
	var cla *endpointv3.ClusterLoadAssignment
	switch {
	case f == grpcClusters || svc.Resolution == registry.ResolutionStatic && !passthrough(pol):
		c, cla = EDSCluster(name, o), b.loadAssignmentLocked(svc, port, subset, loc, sc.client)
	case svc.Resolution == registry.ResolutionDNS:
		c = StrictDNSCluster(dnsSubsetLoadAssignment(name, svc, port, b.view.Endpoints(svc.Hostname), subset, loc, sc.client), o)
	default: // resolution NONE, or loadBalancer PASSTHROUGH
		c = OriginalDstCluster(name, o)
	}
	applyTrafficPolicy(c, pol, port, f)
	applyLocalityWeighted(c, loc)
	return c, cla
}

// dnsSubsetLoadAssignment is dnsLoadAssignment for a subset: the host
// itself stands for a DNS entry without endpoints (and has no labels), and
// a subset that selects no endpoint resolves nothing, not the whole host.
func dnsSubsetLoadAssignment(name string, svc *registry.Service, port registry.Port, eps []*registry.Endpoint, subset *registry.Subset, loc *localityRule, c client) *endpointv3.ClusterLoadAssignment {
	if len(eps) == 0 {
		eps = []*registry.Endpoint{{Hostname: svc.Hostname, Address: svc.Hostname, Ready: true}}
	}
	return localityLoadAssignment(name, port, subsetEndpoints(eps, subset), loc, c)
}

func subsetName(s *registry.Subset) string {
	if s == nil {
		return ""
	}
	return s.Name
}

// subsetEndpoints are the endpoints carrying all of the subset's labels
// (all of them for no subset).
func subsetEndpoints(eps []*registry.Endpoint, s *registry.Subset) []*registry.Endpoint {
	if s == nil {
		return eps
	}
	var out []*registry.Endpoint
	for _, ep := range eps {
		if selects(s.Labels, ep.Labels) {
			out = append(out, ep)
		}
	}
	return out
}

// claKey names a shared assignment: its cluster name and, for a subset,
// the labels (proxies of two namespaces may see two rules that define the
// same subset name differently).
func claKey(name string, s *registry.Subset) string {
	if s == nil {
		return name
	}
	var b strings.Builder
	b.WriteString(name)
	for _, k := range slices.Sorted(maps.Keys(s.Labels)) {
		b.WriteString("\x00" + k + "=" + s.Labels[k])
	}
	return b.String()
}

// loadAssignmentLocked returns the shared ClusterLoadAssignment of a service
// port or of one of its subsets, seen by client c under the locality rule
// loc (nil: the same for every client).
func (b *Builder) loadAssignmentLocked(svc *registry.Service, port registry.Port, subset *registry.Subset, loc *localityRule, c client) *endpointv3.ClusterLoadAssignment {
	name := meshname.OutboundCluster(port.Number, subsetName(subset), svc.Hostname)
	key := claKey(name, subset)
	if loc == nil {
		c = client{}
	} else {
		key += "\x00@" + loc.key() + "\x00" + c.key(b.priorityLabels)
	}
	if cla, ok := b.cla[key]; ok {
		return cla
	}
	cla := localityLoadAssignment(name, port, subsetEndpoints(b.view.Endpoints(svc.Hostname), subset), loc, c)
	b.cla[key], b.claSrc[key] = cla, claSource{host: svc.Hostname, port: port, subset: subset, locality: loc, client: c, eps: endpointsOf(b.view.Endpoints(svc.Hostname))}
	return cla
}
