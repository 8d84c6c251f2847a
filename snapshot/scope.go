package snapshot

import (
	"cmp"
	"maps"
	"slices"
	"strings"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/librarymesh/controlplane/meshname"
	"github.com/librarymesh/controlplane/registry"
)

// scope is what a proxy's Sidecar lets it see. Every proxy of one namespace
// under one Sidecar (or none) has the same scope, and so shares one
// outbound part: key names it.
type scope struct {
	key     string            // memo key of the shared part
	ns      string            // the proxy's namespace
	sidecar *registry.Sidecar // nil: every service exported to ns, ALLOW_ANY
	client  client            // for locality load balancing
	// gateways select the scope's router proxies (nil for sidecars).
	gateways []*registry.Gateway
	// vhds: the scope's Envoy sidecars are on delta ADS streams and get
	// virtual hosts over VHDS (see Proxy.DeltaADS).
	vhds bool
}

// scopeFor picks the proxy's Sidecar as Istio does: one in its namespace
// whose workloadSelector matches its labels (the oldest first), else its
// namespace's Sidecar without selector, else the root namespace's (the
// mesh default). Labels are the registry workload's, else the node
// metadata LABELS. The key is NAMESPACE, then |SIDECAR when one applies,
// then (when locality load balancing is in use) |CLIENT: the proxy's
// locality (its workload's, else the node's) and failoverPriority labels,
// with an empty SIDECAR part when none applies.
func (b *Builder) scopeFor(p *Proxy, w *registry.Workload) *scope {
	labels := p.Metadata.Labels
	if w != nil {
		labels = w.Labels
	}
	sc := selectSidecar(b.view.Sidecars(), b.opts.RootNamespace, p.Namespace, labels)
	s := &scope{key: p.Namespace, ns: p.Namespace, sidecar: sc}
	if sc != nil {
		s.key += "|" + sc.Namespace + "/" + sc.Name
	}
	if b.localityAware {
		locality, network := p.Locality, ""
		if w != nil {
			locality, network = cmp.Or(w.Locality, locality), w.Network
		}
		s.client = newClient(locality, network, labels)
		if sc == nil {
			s.key += "|"
		}
		s.key += "|" + s.client.key(b.priorityLabels)
	}
	return s
}

// selectSidecar returns the Sidecar of a workload in ns with labels, or nil.
// The list is sorted by namespace, oldest first (see registry.View.Sidecars).
func selectSidecar(scs []*registry.Sidecar, rootNS, ns string, labels map[string]string) *registry.Sidecar {
	var namespace, mesh *registry.Sidecar
	for _, sc := range scs {
		switch {
		case sc.Namespace == ns && sc.Selector != nil:
			if len(sc.Selector) > 0 && selects(sc.Selector, labels) {
				return sc
			}
		case sc.Namespace == ns:
			namespace = firstOf(namespace, sc)
		case sc.Namespace == rootNS && sc.Selector == nil:
			mesh = firstOf(mesh, sc)
		}
	}
	return firstOf(namespace, mesh)
}

// services returns the services a proxy of the scope sees, in the order
// given: exported to its namespace and, under a Sidecar with egress
// listeners, matched by one of their hosts. A service matched only by
// listeners of some ports is returned as a copy with just those ports.
func (s *scope) services(all []*registry.Service) []*registry.Service {
	out := make([]*registry.Service, 0, len(all))
	for _, svc := range all {
		if !svc.ExportedTo(s.ns) {
			continue
		}
		if s.sidecar == nil || len(s.sidecar.Egress) == 0 {
			out = append(out, svc)
			continue
		}
		if ports := s.egressPorts(svc); len(ports) == len(svc.Ports) {
			out = append(out, svc)
		} else if len(ports) > 0 {
			trimmed := *svc
			trimmed.Ports = ports
			out = append(out, &trimmed)
		}
	}
	return out
}

// egressPorts are the ports of svc some egress listener lets the proxy
// reach: all of them for a listener without a port, else the listener's.
func (s *scope) egressPorts(svc *registry.Service) []registry.Port {
	var all bool
	var numbers []uint32
	for _, e := range s.sidecar.Egress {
		if !slices.ContainsFunc(e.Hosts, func(h registry.EgressHost) bool {
			return h.MatchNamespace(svc.Namespace, s.ns) && h.MatchHost(svc.Hostname)
		}) {
			continue
		}
		if e.Port == 0 {
			all = true
			break
		}
		numbers = append(numbers, e.Port)
	}
	if all {
		return svc.Ports
	}
	var out []registry.Port
	for _, p := range svc.Ports {
		if slices.Contains(numbers, p.Number) {
			out = append(out, p)
		}
	}
	return out
}

// registryOnly reports whether the Sidecar blocks hosts outside the registry.
func (s *scope) registryOnly() bool {
	return s.sidecar != nil && s.sidecar.OutboundPolicy == registry.OutboundRegistryOnly
}

// catchAllVirtualHost is the last virtual host of an outbound route
// configuration: allow_any to PassthroughCluster, or under REGISTRY_ONLY
// Istio's block_all, which answers 502. Without capture it is always
// block_all: the original destination of a connection to a loopback
// listener is that listener, so passthrough would loop.
func (s *scope) catchAllVirtualHost(mode outboundMode) *routev3.VirtualHost {
	if mode == captured && !s.registryOnly() {
		return AllowAnyVirtualHost()
	}
	return BlockAllVirtualHost()
}

// virtualOutbound is the 15001 listener; under REGISTRY_ONLY its catch-all
// chain goes to BlackHoleCluster, as Istio's does.
func (s *scope) virtualOutbound() *listenerv3.Listener {
	l := VirtualOutboundListener()
	if s.registryOnly() {
		l.FilterChains = []*listenerv3.FilterChain{FilterChain(meshname.VirtualOutboundCatchAllChain, nil, nil,
			TCPProxyFilter(meshname.BlackHoleCluster, meshname.BlackHoleCluster))}
	}
	return l
}

// BlockAllVirtualHost answers every host with 502, as Istio's
// REGISTRY_ONLY outbound traffic policy does.
func BlockAllVirtualHost() *routev3.VirtualHost {
	return VirtualHost(meshname.BlockAllVirtualHost, []string{"*"}, &routev3.Route{
		Name:   meshname.BlockAllVirtualHost,
		Match:  RouteMatchPrefix("/"),
		Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 502}},
	})
}

// labelsKey is a stable text of node metadata labels, for proxyKey.
func labelsKey(labels map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(labels[k])
		b.WriteByte(',')
	}
	return b.String()
}

// holdsStale reports whether a shared part's endpoints include one of the
// stale assignments. A part whose scope leaves out every changed host
// carries over to the next Builder as it is (the same *Resources), so its
// proxies are given exactly what they had.
func holdsStale(list []types.Resource, stale map[*endpointv3.ClusterLoadAssignment]claSource) bool {
	for _, r := range list {
		if _, ok := stale[r.(*endpointv3.ClusterLoadAssignment)]; ok {
			return true
		}
	}
	return false
}
