package snapshot

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/librarymesh/controlplane/meshname"
	"github.com/librarymesh/controlplane/registry"
)

// ReasonGatewayPortConflict: servers of two Gateways that select one proxy
// put different protocols on one port; the first by namespace/name wins.
const ReasonGatewayPortConflict = "GatewayPortConflict"

// ReasonMissingCredential: a server's credentialName names no Secret with
// a certificate and key in the gateway proxy's namespace.
const ReasonMissingCredential = "MissingCredential"

// gatewayServer is a server and the Gateway it belongs to.
type gatewayServer struct {
	gw  *registry.Gateway
	srv *registry.GatewayServer
}

// gatewayScope is the scope of a router proxy: its namespace, its
// locality (from the sidecar scope, base) and the Gateways whose selector
// picks its labels (any namespace, Istio's default).
func (b *Builder) gatewayScope(p *Proxy, w *registry.Workload, base *scope) *scope {
	labels := p.Metadata.Labels
	if w != nil {
		labels = w.Labels
	}
	s := &scope{ns: p.Namespace, client: base.client}
	refs := []string{"router", base.key}
	for _, g := range b.view.Gateways() {
		if g.Selects(labels) {
			s.gateways = append(s.gateways, g)
			refs = append(refs, g.Ref())
		}
	}
	s.key = strings.Join(refs, "|")
	return s
}

// buildGateway is the config every router proxy of a scope shares: one
// listener per server port of its Gateways, the routes of the
// VirtualServices bound to them, the clusters and endpoints those name, and
// the credentials of the servers that terminate TLS. Called with b.mu held.
func (b *Builder) buildGateway(sc *scope) (*Resources, error) {
	r := &Resources{}
	vc := b.virtualServicesLocked(sc.ns, sc.services(b.view.Services()), envoyClusters)
	vc.used = map[string]destination{}
	byPort := b.serversByPort(sc.gateways)
	for _, port := range slices.Sorted(maps.Keys(byPort)) {
		l, routes := b.gatewayListener(vc, port, byPort[port])
		if l != nil {
			r.Listeners = append(r.Listeners, l)
			r.Routes = append(r.Routes, routes...)
		}
	}
	r.Secrets = b.gatewaySecrets(sc)
	for _, name := range slices.Sorted(maps.Keys(vc.used)) {
		d := vc.used[name]
		port, _ := d.svc.Port(d.port)
		clusters, clas := b.outboundClustersLocked(sc, d.svc, port, envoyClusters)
		r.Clusters = append(r.Clusters, clusters...)
		r.Endpoints = append(r.Endpoints, clas...)
	}
	r.Clusters = append(r.Clusters, BlackHoleCluster())
	return r, nil
}

// serversByPort groups the servers of the Gateways by port. Servers whose
// protocol family differs from the port's first server are left out, each
// with a problem.
func (b *Builder) serversByPort(gws []*registry.Gateway) map[uint32][]gatewayServer {
	out := map[uint32][]gatewayServer{}
	for _, g := range gws {
		for i := range g.Servers {
			s := gatewayServer{gw: g, srv: &g.Servers[i]}
			if first := out[s.srv.Port]; len(first) > 0 && serverFamily(first[0].srv) != serverFamily(s.srv) {
				b.problemLocked(registry.Problem{Object: registry.KindGateway + " " + g.Ref(),
					Field: s.srv.Field + ".port", Reason: ReasonGatewayPortConflict,
					Message: fmt.Sprintf("port %d is %s in Gateway %s (%s), which wins; this server is left out",
						s.srv.Port, serverFamily(first[0].srv), first[0].gw.Ref(), first[0].srv.Field)})
				continue
			}
			out[s.srv.Port] = append(out[s.srv.Port], s)
		}
	}
	return out
}

// serverFamily says how a server's connections are handled: plaintext
// HTTP, HTTPS terminated to HTTP, or TLS/TCP streams.
func serverFamily(s *registry.GatewayServer) string {
	switch {
	case s.Protocol.IsHTTP():
		return "HTTP"
	case s.ServesHTTP():
		return "HTTPS"
	}
	return "TCP/TLS"
}

// gatewayListener is the `0.0.0.0_PORT` listener of a port's servers and
// its route configurations; nil when no server has anything to serve.
func (b *Builder) gatewayListener(vc *vsContext, port uint32, servers []gatewayServer) (*listenerv3.Listener, []types.Resource) {
	name := meshname.GatewayListener(port)
	var chains []*listenerv3.FilterChain
	var routes []types.Resource
	switch serverFamily(servers[0].srv) {
	case "HTTP":
		rc := b.gatewayRouteConfig(vc, meshname.GatewayHTTPRoute(port), port, servers)
		routes = append(routes, rc)
		chains = append(chains, FilterChain(name, nil, nil, b.gatewayHCM(name, rc)))
	case "HTTPS":
		for _, s := range servers {
			rc := b.gatewayRouteConfig(vc, meshname.GatewayHTTPSRoute(port, s.srv.PortName, s.gw.Name, s.gw.Namespace), port, []gatewayServer{s})
			routes = append(routes, rc)
			chains = append(chains, FilterChain(rc.GetName(), serverNameMatch(s.srv), TransportSocket(GatewayTlsContext(s.srv.TLS, true)), b.gatewayHCM(name, rc)))
		}
	default:
		chains = b.gatewayStreamChains(vc, port, servers)
	}
	if len(chains) == 0 {
		return nil, nil
	}
	l := GatewayListener(name, port, chains)
	if slices.ContainsFunc(chains, func(c *listenerv3.FilterChain) bool { return len(c.GetFilterChainMatch().GetServerNames()) > 0 }) {
		l.ListenerFilters = b.pieces.tlsInspector
	}
	return l, routes
}

// gatewayHCM is an HTTP connection manager for a gateway route
// configuration, with the fault filter when a route injects faults.
func (b *Builder) gatewayHCM(statPrefix string, rc *routev3.RouteConfiguration) *listenerv3.Filter {
	o := hcmOptions{RDS: rc.GetName(), Logs: []*accesslogv3.AccessLog{b.pieces.accessLog}}
	if hasFaultRoute(rc) {
		o.Filters = []*hcmv3.HttpFilter{FaultFilter()}
	}
	h := HTTPConnectionManager(statPrefix, o)
	h.UseRemoteAddress = wrapperspb.Bool(true) // a gateway is the edge: the client is the peer
	return HCMFilter(h)
}

// serverNameMatch matches a terminating server's hosts by SNI, or nil when
// one of them is "*" (any name).
func serverNameMatch(s *registry.GatewayServer) *listenerv3.FilterChainMatch {
	var names []string
	for _, h := range s.Hosts {
		if h.Host == "*" {
			return nil
		}
		if !slices.Contains(names, h.Host) {
			names = append(names, h.Host)
		}
	}
	return &listenerv3.FilterChainMatch{ServerNames: names}
}

// gatewayRouteConfig has a virtual host per host of the VirtualServices
// bound to the servers (the first VirtualService naming a host routes it),
// or the blackhole virtual host (404) when none is.
func (b *Builder) gatewayRouteConfig(vc *vsContext, name string, port uint32, servers []gatewayServer) *routev3.RouteConfiguration {
	var vhosts []*routev3.VirtualHost
	seen := map[string]bool{}
	for _, vs := range b.view.VirtualServices() {
		if !vs.ExportedTo(vc.ns) || len(vs.HTTP) == 0 {
			continue
		}
		for _, s := range servers {
			if !vs.BoundTo(s.gw) {
				continue
			}
			vc.gateway = s.gw.Ref()
			for _, h := range vs.Hosts {
				if seen[h] || !s.srv.BindsHost(s.gw.Namespace, vs.Namespace, h) {
					continue
				}
				if vh := gatewayVirtualHost(vc, vs, h, port, s.srv); vh != nil {
					seen[h] = true
					vhosts = append(vhosts, vh)
				}
			}
		}
	}
	vc.gateway = ""
	if len(vhosts) == 0 {
		vhosts = append(vhosts, BlackholeVirtualHost(port))
	}
	return RouteConfiguration(name, vhosts...)
}

// gatewayVirtualHost is the virtual host of one bound host: the
// VirtualService's HTTP routes that apply to the gateway and port, nil
// when none does.
func gatewayVirtualHost(vc *vsContext, vs *registry.VirtualService, host string, port uint32, srv *registry.GatewayServer) *routev3.VirtualHost {
	var routes []*routev3.Route
	for i := range vs.HTTP {
		routes = append(routes, vc.httpRoute(&vs.HTTP[i], port)...)
	}
	if len(routes) == 0 {
		return nil
	}
	vh := VirtualHost(meshname.GatewayVirtualHost(host, port), []string{host, host + ":*"}, routes...)
	if srv.TLS != nil && srv.TLS.HTTPSRedirect {
		vh.RequireTls = routev3.VirtualHost_ALL
	}
	return vh
}

// BlackholeVirtualHost answers every request with 404: a gateway port no
// VirtualService binds a host to, as Istio's gateways do.
func BlackholeVirtualHost(port uint32) *routev3.VirtualHost {
	return VirtualHost(meshname.BlackholeVirtualHost(port), []string{"*"}, &routev3.Route{
		Name:   meshname.DefaultRoute,
		Match:  RouteMatchPrefix("/"),
		Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 404}},
	})
}

// hasFaultRoute reports whether a route of rc carries fault config.
func hasFaultRoute(rc *routev3.RouteConfiguration) bool {
	for _, vh := range rc.GetVirtualHosts() {
		for _, rt := range vh.GetRoutes() {
			if _, ok := rt.GetTypedPerFilterConfig()[faultFilterName]; ok {
				return true
			}
		}
	}
	return false
}
