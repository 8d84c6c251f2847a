package snapshot

import (
	"fmt"
	"slices"
	"strings"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/librarymesh/controlplane/meshname"
	"github.com/librarymesh/controlplane/registry"
)

// outboundMode is how an app's connections reach an Envoy sidecar's
// outbound listeners.
type outboundMode int

const (
	// captured: iptables sends them to virtualOutbound (15001), which hands
	// each to its `VIP_PORT` listener (bind_to_port false). Pod sidecars,
	// and VM sidecars whose INTERCEPTION_MODE is REDIRECT or TPROXY.
	captured outboundMode = iota
	// loopback: no capture (a VM). The app resolves a service's name to its
	// meshname.LoopbackAddress through the node agent's DNS and connects to
	// it, where the service's outbound listeners are bound.
	loopback
)

// buildSidecarOutbound is the outbound config every captured Envoy sidecar
// of a scope shares (see buildOutbound). Called with b.mu held.
func (b *Builder) buildSidecarOutbound(sc *scope) (*Resources, error) {
	return b.buildOutbound(sc, captured), nil
}

// buildVMOutbound is the outbound config every VM sidecar without capture
// of a scope shares: its own listeners and routes (see buildOutbound), and
// the very cluster and endpoint protos of the scope's pod sidecars. Called
// with b.mu held.
func (b *Builder) buildVMOutbound(sc *scope) (*Resources, error) {
	pod, err := b.sharedLocked(b.sidecarOut, sc, b.buildSidecarOutbound)
	if err != nil {
		return nil, err
	}
	r := b.buildOutbound(sc, loopback)
	r.Clusters, r.Endpoints = slices.Clone(pod.Clusters), slices.Clone(pod.Endpoints)
	return r, nil
}

// buildOutbound is the outbound config every Envoy sidecar of a scope and
// mode shares: the services exported to its namespace ns that its Sidecar's
// egress lets it see (what a proxy sees depends on its namespace and
// Sidecar alone, so the part is built once per scope). Only the captured
// mode builds clusters and endpoints. Called with b.mu held.
func (b *Builder) buildOutbound(sc *scope, mode outboundMode) *Resources {
	ns := sc.ns
	r := &Resources{}
	vhostsByPort := map[uint32][]*routev3.VirtualHost{}
	seenDomains := map[uint32]map[string]bool{}
	svcs := sc.services(b.view.Services())
	vc := b.virtualServicesLocked(ns, svcs, envoyClusters)
	owners := map[string]loopbackOwner{} // by loopback listener name
	for _, svc := range svcs {
		for _, port := range svc.Ports {
			if mode == captured {
				clusters, clas := b.outboundClustersLocked(sc, svc, port, envoyClusters)
				r.Clusters = append(r.Clusters, clusters...)
				r.Endpoints = append(r.Endpoints, clas...)
			}
			for _, l := range b.modeListenersLocked(vc, sc, svc, port, mode, owners) {
				r.Listeners = append(r.Listeners, l)
			}
			if port.Protocol.IsHTTP() {
				if seenDomains[port.Number] == nil {
					seenDomains[port.Number] = map[string]bool{}
				}
				domains := uniqueDomains(serviceDomains(svc, port.Number, ns), seenDomains[port.Number])
				if len(domains) == 0 {
					continue
				}
				vhostsByPort[port.Number] = append(vhostsByPort[port.Number], b.outboundVirtualHostLocked(vc, sc, svc, port, domains))
			}
		}
	}
	for port, vhosts := range vhostsByPort {
		sc.addOutboundRoutes(r, meshname.RouteConfig(port), vhosts, mode)
	}
	if mode == captured {
		r.Listeners = append(r.Listeners, sc.virtualOutbound())
		r.Clusters = append(r.Clusters,
			OriginalDstCluster(meshname.PassthroughCluster, clusterOptions{}),
			OriginalDstCluster(meshname.InboundPassthroughCluster, clusterOptions{}),
			BlackHoleCluster())
	}
	return r
}

// loopbackOwner is the service port holding a loopback listener.
type loopbackOwner struct {
	host string
	http bool
}

// modeListenersLocked are the outbound listeners of one service port:
// captured, one per VIP; loopback, one bound on the service's loopback
// address (none for a wildcard host, or a NONE resolution, whose original
// destination would be Envoy itself). owners records which host holds each
// loopback listener: two hosts sharing an address on a TCP port is a
// problem (the first by host name keeps it). Called with b.mu held.
func (b *Builder) modeListenersLocked(vc *vsContext, sc *scope, svc *registry.Service, port registry.Port, mode outboundMode, owners map[string]loopbackOwner) []*listenerv3.Listener {
	if mode == captured {
		return b.serviceListenersLocked(vc, sc, svc, svc, port, false)
	}
	if strings.HasPrefix(svc.Hostname, "*") || svc.Resolution == registry.ResolutionNone {
		return nil
	}
	local := *svc
	local.Addresses = []string{meshname.LoopbackAddress(svc.Hostname).String()}
	name := meshname.OutboundListener(local.Addresses[0], port.Number)
	if owner, taken := owners[name]; taken {
		if owner.host != svc.Hostname && !(owner.http && port.Protocol.IsHTTP()) {
			b.problemLocked(fmt.Errorf("listener %s: services %s and %s share loopback address %s on port %d, not both HTTP; %s is not reachable from VMs without capture",
				name, owner.host, svc.Hostname, local.Addresses[0], port.Number, svc.Hostname))
		}
		return nil
	}
	owners[name] = loopbackOwner{host: svc.Hostname, http: port.Protocol.IsHTTP()}
	return b.serviceListenersLocked(vc, sc, svc, &local, port, true)
}

// outboundVirtualHostName is a service port's virtual host name in the
// port's route configuration: `HOST:PORT`, or over VHDS `PORT/HOST:PORT`.
func (s *scope) outboundVirtualHostName(host string, port uint32) string {
	name := meshname.GRPCClientListener(host, port)
	if s.vhds {
		return meshname.VHDSVirtualHost(meshname.RouteConfig(port), name)
	}
	return name
}

// addOutboundRoutes adds a port's outbound route configuration to r: its
// services' virtual hosts and the catch-all. Over VHDS the route
// configuration holds the catch-all and vhds (delta ADS) alone, and the
// services' virtual hosts go to r.VirtualHosts, so a new service sends one
// virtual host rather than the whole route configuration. Envoy matches a
// host against both together, the catch-all last.
func (s *scope) addOutboundRoutes(r *Resources, name string, vhosts []*routev3.VirtualHost, mode outboundMode) {
	if !s.vhds {
		r.Routes = append(r.Routes, RouteConfiguration(name, append(vhosts, s.catchAllVirtualHost(mode))...))
		return
	}
	rc := RouteConfiguration(name, s.catchAllVirtualHost(mode))
	rc.Vhds = &routev3.Vhds{ConfigSource: adsConfigSource()}
	r.Routes = append(r.Routes, rc)
	for _, vh := range vhosts {
		r.VirtualHosts = append(r.VirtualHosts, vh)
	}
}

// dnsLoadAssignment resolves the endpoints' names, or the host itself when a
// DNS ServiceEntry lists no endpoints (as Istio does).
func dnsLoadAssignment(name string, svc *registry.Service, port registry.Port, eps []*registry.Endpoint) *endpointv3.ClusterLoadAssignment {
	if len(eps) == 0 {
		eps = []*registry.Endpoint{{Hostname: svc.Hostname, Address: svc.Hostname, Ready: true}}
	}
	return ClusterLoadAssignment(name, port, eps)
}

// outboundListeners are `VIP_PORT` per VIP, or `0.0.0.0_PORT`: TCP ports
// proxy to the cluster (hashing connections by tcpHash), HTTP ports route
// through RDS `PORT`. bind: the listener binds its address (else it only
// takes connections virtualOutbound hands it).
func outboundListeners(svc *registry.Service, port registry.Port, tcpHash []*typev3.HashPolicy, bind bool) []*listenerv3.Listener {
	vips := svc.Addresses
	if len(vips) == 0 {
		vips = []string{wildcardAddress}
	}
	cluster := meshname.OutboundCluster(port.Number, "", svc.Hostname)
	out := make([]*listenerv3.Listener, 0, len(vips))
	for _, vip := range vips {
		name := meshname.OutboundListener(vip, port.Number)
		var f *listenerv3.Filter
		if port.Protocol.IsHTTP() {
			f = HCMFilter(HTTPConnectionManager(name, hcmOptions{RDS: meshname.RouteConfig(port.Number)}))
		} else {
			f = HashedTCPProxyFilter(cluster, cluster, tcpHash)
		}
		l := OutboundListener(name, vip, port.Number, FilterChain(name, nil, nil, f))
		if bind {
			l.BindToPort = nil
		}
		out = append(out, l)
	}
	return out
}

// serviceDomains are the names a client in namespace ns may use for the
// service: FQDN, short names, VIPs, each alone and with `:PORT`.
func serviceDomains(svc *registry.Service, port uint32, ns string) []string {
	names := []string{svc.Hostname}
	if rest, ok := strings.CutPrefix(svc.Hostname, svc.Name+"."+svc.Namespace+".svc."); ok && svc.Name != "" && rest != "" {
		names = append(names, svc.Name+"."+svc.Namespace+".svc", svc.Name+"."+svc.Namespace)
		if svc.Namespace == ns {
			names = append(names, svc.Name)
		}
	}
	names = append(names, svc.Addresses...)
	out := make([]string, 0, 2*len(names))
	for _, n := range names {
		out = append(out, n, meshname.GRPCClientListener(n, port))
	}
	return out
}

// uniqueDomains drops domains an earlier virtual host of the route config
// already claimed (Envoy rejects duplicates).
func uniqueDomains(domains []string, seen map[string]bool) []string {
	return slices.DeleteFunc(domains, func(d string) bool {
		if seen[d] {
			return true
		}
		seen[d] = true
		return false
	})
}
