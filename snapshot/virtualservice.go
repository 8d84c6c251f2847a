package snapshot

import (
	"fmt"
	"slices"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/librarymesh/controlplane/meshname"
	"github.com/librarymesh/controlplane/registry"
)

// vsContext applies VirtualServices to one scope's outbound part: it knows
// which services (and so which clusters) the scope's proxies see, so that a
// route never names a cluster they lack.
type vsContext struct {
	b       *Builder
	ns      string
	flavor  clusterFlavor
	visible map[string]*registry.Service // by hostname, with the scope's ports
	svcs    []*registry.Service          // the same, in the view's order
	// wildcardTLS are the filter chains of each port's 0.0.0.0_PORT
	// listener (see wildcardTLSChains).
	wildcardTLS map[uint32][]*listenerv3.FilterChain
	// faultPorts are the ports whose HTTP routes inject faults: their
	// connection managers need the fault filter (Envoy and grpc-go apply a
	// route's fault config only through it).
	faultPorts map[uint32]bool
	routing    map[string]*registry.VirtualService // by hostname, nil for none
	// gateway is the gateway whose routes are built ("namespace/name"), or
	// "" for the mesh (sidecars and proxyless clients).
	gateway string
	// used records the destinations routes were built to, by cluster name,
	// when not nil (a gateway builds the clusters its routes name).
	used map[string]destination
}

// gatewayName is the name route matches must list to apply: the gateway's,
// or registry.MeshGateway.
func (vc *vsContext) gatewayName() string {
	if vc.gateway == "" {
		return registry.MeshGateway
	}
	return vc.gateway
}

// virtualServicesLocked prepares VirtualService routing for a scope's
// services (as the build function sees them). Called with b.mu held.
func (b *Builder) virtualServicesLocked(ns string, svcs []*registry.Service, f clusterFlavor) *vsContext {
	vc := &vsContext{b: b, ns: ns, flavor: f, visible: map[string]*registry.Service{}, faultPorts: map[uint32]bool{},
		wildcardTLS: map[uint32][]*listenerv3.FilterChain{}, routing: map[string]*registry.VirtualService{}}
	for _, svc := range svcs {
		if f == grpcClusters && svc.Resolution != registry.ResolutionStatic {
			continue
		}
		vc.visible[svc.Hostname] = svc
		vc.svcs = append(vc.svcs, svc)
	}
	if len(b.view.VirtualServices()) == 0 {
		return vc
	}
	for _, svc := range vc.visible {
		vs := vc.virtualService(svc.Hostname)
		for _, port := range svc.Ports {
			if vs != nil && port.Protocol.IsHTTP() && vc.hasFault(vs, port.Number) {
				vc.faultPorts[port.Number] = true
			}
		}
	}
	return vc
}

// virtualService is the VirtualService that routes host for the scope, or nil.
func (vc *vsContext) virtualService(host string) *registry.VirtualService {
	vs, ok := vc.routing[host]
	if !ok {
		vs = registry.VirtualServiceFor(vc.b.view.VirtualServices(), vc.ns, host)
		vc.routing[host] = vs
	}
	return vs
}

// hasFault reports whether an HTTP route of vs that applies to port injects faults.
func (vc *vsContext) hasFault(vs *registry.VirtualService, port uint32) bool {
	for i := range vs.HTTP {
		r := &vs.HTTP[i]
		if (r.Delay != nil || r.Abort != nil) && len(vc.httpMatches(r, port)) > 0 {
			return true
		}
	}
	return false
}

// httpRoutes are the routes of a service port's virtual host: its
// VirtualService's HTTP routes in order, or def when it has none (or none
// that applies to the port).
func (vc *vsContext) httpRoutes(svc *registry.Service, port registry.Port, def *routev3.Route) []*routev3.Route {
	vs := vc.virtualService(svc.Hostname)
	if vs == nil || len(vs.HTTP) == 0 {
		return []*routev3.Route{def}
	}
	var out []*routev3.Route
	for i := range vs.HTTP {
		out = append(out, vc.httpRoute(&vs.HTTP[i], port.Number)...)
	}
	if len(out) == 0 {
		return []*routev3.Route{def}
	}
	return out
}

// httpMatches are the route's matches that apply to the scope's proxies on
// port; a route without matches applies everywhere (one catch-all match).
func (vc *vsContext) httpMatches(r *registry.HTTPRoute, port uint32) []*registry.HTTPMatch {
	if len(r.Matches) == 0 {
		return []*registry.HTTPMatch{{}}
	}
	var out []*registry.HTTPMatch
	for i := range r.Matches {
		m := &r.Matches[i]
		if !m.Unsupported && (m.Port == 0 || m.Port == port) && (len(m.Gateways) == 0 || slices.Contains(m.Gateways, vc.gatewayName())) &&
			(m.SourceNamespace == "" || m.SourceNamespace == vc.ns) {
			out = append(out, m)
		}
	}
	return out
}

// httpRoute is one Envoy route per applicable match of an HTTP route,
// named as Istio names them (the route's name, then ".MATCHNAME").
func (vc *vsContext) httpRoute(r *registry.HTTPRoute, port uint32) []*routev3.Route {
	matches := vc.httpMatches(r, port)
	if len(matches) == 0 {
		return nil
	}
	tmpl := &routev3.Route{}
	if !vc.routeAction(tmpl, r, port) {
		return nil
	}
	vc.routeExtras(tmpl, r)
	out := make([]*routev3.Route, 0, len(matches))
	for _, m := range matches {
		rt := cloneRoute(tmpl)
		rt.Name, rt.Match = routeName(r.Name, m.Name), RouteMatch(m)
		if vc.flavor == grpcClusters {
			legacyHeaderMatchers(rt.Match)
		}
		out = append(out, rt)
	}
	return out
}

func routeName(route, match string) string {
	switch {
	case route == "" && match == "":
		return meshname.DefaultRoute
	case match == "":
		return route
	}
	return route + "." + match
}

// routeAction sets the route's action: forward, redirect or respond. It
// reports false when nothing is left to forward to.
func (vc *vsContext) routeAction(rt *routev3.Route, r *registry.HTTPRoute, port uint32) bool {
	switch {
	case r.Redirect != nil:
		rt.Action = &routev3.Route_Redirect{Redirect: RedirectAction(r.Redirect)}
		return true
	case r.DirectResponse != nil:
		rt.Action = &routev3.Route_DirectResponse{DirectResponse: DirectResponseAction(r.DirectResponse)}
		return true
	}
	dests := vc.destinations(r.Route, port)
	if len(dests) == 0 {
		return false
	}
	a := &routev3.RouteAction{Timeout: RouteTimeout(r.Timeout)}
	if vc.flavor == grpcClusters && r.Timeout != nil && *r.Timeout > 0 {
		a.MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: a.Timeout}
	}
	if len(dests) == 1 {
		a.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: dests[0].cluster}
		a.HashPolicy = vc.b.hashPoliciesLocked(vc.ns, dests[0].svc, dests[0].port, dests[0].d.Subset)
		addHeaderOps(&rt.RequestHeadersToAdd, &rt.RequestHeadersToRemove, &rt.ResponseHeadersToAdd, &rt.ResponseHeadersToRemove, dests[0].d.Headers)
	} else {
		a.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: weightedClusters(dests)}
	}
	a.RetryPolicy = RetryPolicy(r.Retries, vc.flavor == envoyClusters)
	if r.Rewrite != nil {
		a.PrefixRewrite = r.Rewrite.URI
		if r.Rewrite.Authority != "" {
			a.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: r.Rewrite.Authority}
		}
	}
	if r.Mirror != nil {
		if m := vc.destinations([]registry.Destination{*r.Mirror}, port); len(m) == 1 {
			a.RequestMirrorPolicies = []*routev3.RouteAction_RequestMirrorPolicy{MirrorPolicy(m[0].cluster, r.MirrorPercent)}
		}
	}
	rt.Action = &routev3.Route_Route{Route: a}
	return true
}

// routeExtras sets header edits and faults.
func (vc *vsContext) routeExtras(rt *routev3.Route, r *registry.HTTPRoute) {
	addHeaderOps(&rt.RequestHeadersToAdd, &rt.RequestHeadersToRemove, &rt.ResponseHeadersToAdd, &rt.ResponseHeadersToRemove, r.Headers)
	if f := HTTPFault(r.Delay, r.Abort); f != nil {
		rt.TypedPerFilterConfig = map[string]*anypb.Any{faultFilterName: mustAny(f)}
	}
}

// destination is a route destination resolved against the scope.
type destination struct {
	d       registry.Destination
	svc     *registry.Service
	port    uint32
	cluster string
}

// destinations resolves a route's destinations for the routed port,
// leaving out those the scope cannot reach (an unknown or unseen host or
// port, a subset no DestinationRule in force defines: the registry reports
// them) and those of weight 0 beside others.
func (vc *vsContext) destinations(in []registry.Destination, port uint32) []destination {
	var out []destination
	for _, d := range in {
		if d.Weight == 0 && len(in) > 1 {
			continue
		}
		svc := vc.visible[d.Host]
		if svc == nil {
			continue
		}
		p, ok := registry.DestinationPort(svc, &d, port)
		if !ok || (d.Subset != "" && !vc.hasSubset(svc, d.Subset)) {
			continue
		}
		dst := destination{d: d, svc: svc, port: p.Number, cluster: meshname.OutboundCluster(p.Number, d.Subset, svc.Hostname)}
		if vc.used != nil {
			vc.used[dst.cluster] = dst
		}
		out = append(out, dst)
	}
	return out
}

// hasSubset reports whether the DestinationRule in force for the scope
// defines the subset (and so its cluster exists).
func (vc *vsContext) hasSubset(svc *registry.Service, subset string) bool {
	dr := DestinationRuleFor(vc.b.view.DestinationRules(), vc.b.opts.RootNamespace, vc.ns, svc)
	return dr != nil && slices.ContainsFunc(dr.Subsets, func(s registry.Subset) bool { return s.Name == subset })
}

func weightedClusters(dests []destination) *routev3.WeightedCluster {
	wc := &routev3.WeightedCluster{}
	for _, d := range dests {
		c := &routev3.WeightedCluster_ClusterWeight{Name: d.cluster, Weight: wrapperspb.UInt32(uint32(d.d.Weight))}
		addHeaderOps(&c.RequestHeadersToAdd, &c.RequestHeadersToRemove, &c.ResponseHeadersToAdd, &c.ResponseHeadersToRemove, d.d.Headers)
		wc.Clusters = append(wc.Clusters, c)
	}
	return wc
}

// httpFilters are the filters before the router on a port's connection
// managers: the fault filter when a route of the port injects faults.
func (vc *vsContext) httpFilters(port uint32) []*hcmv3.HttpFilter {
	if vc.faultPorts[port] {
		return []*hcmv3.HttpFilter{FaultFilter()}
	}
	return nil
}

// listeners changes a service port's outbound listeners for its
// VirtualService: the fault filter on HTTP ports, tcp_proxy to the
// weighted destinations of the first TCP route that matches the port,
// and one filter chain per SNI of TLS routes. Listeners not affected are
// returned as they are.
func (vc *vsContext) listeners(svc *registry.Service, port registry.Port, ls []*listenerv3.Listener) []*listenerv3.Listener {
	if port.Protocol.IsHTTP() {
		if f := vc.httpFilters(port.Number); f != nil {
			for _, l := range ls {
				hcm := HTTPConnectionManager(l.GetName(), hcmOptions{RDS: meshname.RouteConfig(port.Number), Filters: f})
				l.FilterChains = []*listenerv3.FilterChain{FilterChain(l.GetName(), nil, nil, HCMFilter(hcm))}
			}
		}
		return ls
	}
	if len(svc.Addresses) == 0 {
		if chains := vc.wildcardTLSChains(port.Number, ls[0].GetFilterChains()[0]); len(chains) > 0 {
			for _, l := range ls {
				l.FilterChains, l.ListenerFilters = chains, vc.b.pieces.tlsInspector
			}
			return ls
		}
	}
	vs := vc.virtualService(svc.Hostname)
	if vs == nil {
		return ls
	}
	if chains := vc.tlsChains(vs, port.Number, map[string]bool{}); len(chains) > 0 {
		for _, l := range ls {
			l.FilterChains, l.ListenerFilters = chains, vc.b.pieces.tlsInspector
		}
		return ls
	}
	if dests := vc.tcpDestinations(vs, port.Number); len(dests) > 0 {
		for _, l := range ls {
			l.FilterChains = []*listenerv3.FilterChain{FilterChain(l.GetName(), nil, nil, TCPProxyToDestinations(dests))}
		}
	}
	return ls
}

// l4Applies reports whether an L4 route matches the port for the scope.
func (vc *vsContext) l4Applies(r *registry.L4Route, port uint32) bool {
	if len(r.Matches) == 0 {
		return true
	}
	return slices.ContainsFunc(r.Matches, func(m registry.L4Match) bool { return vc.l4MatchApplies(m, port) })
}

func (vc *vsContext) l4MatchApplies(m registry.L4Match, port uint32) bool {
	return !m.Unsupported && (m.Port == 0 || m.Port == port) && (len(m.Gateways) == 0 || slices.Contains(m.Gateways, vc.gatewayName())) &&
		(m.SourceNamespace == "" || m.SourceNamespace == vc.ns)
}

// tcpDestinations are the destinations of the first TCP route for the port.
func (vc *vsContext) tcpDestinations(vs *registry.VirtualService, port uint32) []destination {
	for i := range vs.TCP {
		if vc.l4Applies(&vs.TCP[i], port) {
			return vc.destinations(vs.TCP[i].Route, port)
		}
	}
	return nil
}

// tlsChains are one filter chain per TLS route match for the port,
// matching its SNI hosts (each SNI in the first chain that names it).
func (vc *vsContext) tlsChains(vs *registry.VirtualService, port uint32, seen map[string]bool) []*listenerv3.FilterChain {
	var out []*listenerv3.FilterChain
	for i := range vs.TLS {
		r := &vs.TLS[i]
		dests := vc.destinations(r.Route, port)
		if len(dests) == 0 {
			continue
		}
		for j, m := range r.Matches {
			if !vc.l4MatchApplies(m, port) {
				continue
			}
			snis := uniqueDomains(slices.Clone(m.SNIHosts), seen)
			if len(snis) == 0 {
				continue
			}
			name := fmt.Sprintf("%s|tls|%d.%d", vs.Name, i, j)
			out = append(out, FilterChain(name, &listenerv3.FilterChainMatch{ServerNames: snis}, nil, TCPProxyToDestinations(dests)))
		}
	}
	return out
}

// wildcardTLSChains are the chains of a port's 0.0.0.0_PORT listener when
// TLS routes apply to it. Every service without a VIP shares that listener
// (the first by host name gives it its name and content), so the TLS routes
// of all their VirtualServices become its chains, in host order (an SNI
// goes to the first chain naming it), and the first service's own chain,
// def (the listeners are built in service order, so the first call brings
// it), stays for connections no SNI matches, where they went before. None
// when no TLS route applies.
func (vc *vsContext) wildcardTLSChains(port uint32, def *listenerv3.FilterChain) []*listenerv3.FilterChain {
	if chains, ok := vc.wildcardTLS[port]; ok {
		return chains
	}
	var chains []*listenerv3.FilterChain
	seen := map[string]bool{}
	for _, s := range vc.svcs {
		p, ok := s.Port(port)
		if len(s.Addresses) > 0 || !ok || p.Protocol.IsHTTP() {
			continue
		}
		if vs := vc.virtualService(s.Hostname); vs != nil {
			chains = append(chains, vc.tlsChains(vs, port, seen)...)
		}
	}
	if len(chains) > 0 {
		chains = append(chains, def)
	}
	vc.wildcardTLS[port] = chains
	return chains
}

// TCPProxyToDestinations forwards connections to one cluster, or splits
// them between weighted clusters.
func TCPProxyToDestinations(dests []destination) *listenerv3.Filter {
	if len(dests) == 1 {
		return TCPProxyFilter(dests[0].cluster, dests[0].cluster)
	}
	wc := &tcpproxyv3.TcpProxy_WeightedCluster{}
	for _, d := range dests {
		wc.Clusters = append(wc.Clusters, &tcpproxyv3.TcpProxy_WeightedCluster_ClusterWeight{Name: d.cluster, Weight: uint32(d.d.Weight)})
	}
	return &listenerv3.Filter{
		Name: tcpProxyFilterName,
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(&tcpproxyv3.TcpProxy{
			StatPrefix: dests[0].cluster, ClusterSpecifier: &tcpproxyv3.TcpProxy_WeightedClusters{WeightedClusters: wc},
		})},
	}
}

// grpcFilters are the filters before the router of a proxyless client's
// `HOST:PORT` listener: the fault filter when its routes inject faults.
func (vc *vsContext) grpcFilters(svc *registry.Service, port registry.Port) []*hcmv3.HttpFilter {
	if vs := vc.virtualService(svc.Hostname); vs != nil && vc.hasFault(vs, port.Number) {
		return []*hcmv3.HttpFilter{FaultFilter()}
	}
	return nil
}
