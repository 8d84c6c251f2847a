package snapshot

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"

	"github.com/librarymesh/controlplane/meshname"
	"github.com/librarymesh/controlplane/registry"
)

// buildGRPCOutbound is what every proxyless gRPC client of a scope shares:
// per service port exported to its namespace ns (and let through by its
// Sidecar's egress) a `HOST:PORT` api_listener, its route, an EDS cluster
// and its endpoints. grpc-go has no STRICT_DNS or ORIGINAL_DST, so only
// services with registry endpoints (STATIC) are offered. Called with b.mu held.
func (b *Builder) buildGRPCOutbound(sc *scope) (*Resources, error) {
	ns := sc.ns
	r := &Resources{}
	svcs := sc.services(b.view.Services())
	vc := b.virtualServicesLocked(ns, svcs, grpcClusters)
	for _, svc := range svcs {
		if svc.Resolution != registry.ResolutionStatic {
			continue
		}
		for _, port := range svc.Ports {
			name := meshname.GRPCClientListener(svc.Hostname, port.Number)
			cluster := meshname.OutboundCluster(port.Number, "", svc.Hostname)
			r.Listeners = append(r.Listeners, APIListener(name, HTTPConnectionManager(name, hcmOptions{RDS: name, Filters: vc.grpcFilters(svc, port)})))
			r.Routes = append(r.Routes, RouteConfiguration(name,
				VirtualHost(name, []string{name, svc.Hostname}, vc.httpRoutes(svc, port,
					withHashPolicy(RouteToCluster(meshname.DefaultRoute, cluster), b.hashPoliciesLocked(ns, svc, port.Number, "")))...)))
			clusters, clas := b.outboundClustersLocked(sc, svc, port, grpcClusters)
			r.Clusters = append(r.Clusters, clusters...)
			r.Endpoints = append(r.Endpoints, clas...)
		}
	}
	return r, nil
}

// buildGRPCInbound is a proxyless gRPC server's own part: the listener
// grpc-go's xds.NewGRPCServer asks for on each port its workload serves, for
// the workload's IP and for the wildcards a server on `:PORT` listens on
// (grpc-go wants the Listener's address to be its listening address exactly).
// grpc-go cannot tell TLS from plaintext on one port, so PERMISSIVE serves
// plaintext; STRICT requires a client certificate.
func (b *Builder) buildGRPCInbound(w *registry.Workload) (*Resources, error) {
	if w == nil {
		return nil, nil
	}
	r := &Resources{}
	authz := b.authzFor(w)
	for _, ip := range b.inboundPorts(w) {
		route := RouteConfiguration(ip.cluster(),
			VirtualHost(meshname.InboundVirtualHost(ip.target), []string{"*"}, NonForwardingRoute(meshname.DefaultRoute)))
		var tls *corev3.TransportSocket
		if ip.mode == registry.MTLSStrict {
			tls = b.pieces.grpcDownstreamTLS
		}
		chain := b.markTrust(FilterChain(meshname.InboundFilterChain(ip.target, tls != nil), nil, tls,
			HCMFilter(HTTPConnectionManager(ip.cluster(), hcmOptions{Inline: route,
				Filters: httpRBACFilters(b.inboundRBAC(ip.authzTarget(authz, true)))}))))
		for _, addr := range []string{w.Address, wildcardAddress, wildcardAddressV6} {
			// grpc-go's own naming and the one in the bootstrap Istio's agent writes.
			for _, name := range []string{meshname.GRPCServerListener(addr, ip.target), meshname.IstioGRPCServerListener(addr, ip.target)} {
				r.Listeners = append(r.Listeners, &listenerv3.Listener{
					Name:             name,
					Address:          SocketAddress(addr, ip.target),
					TrafficDirection: corev3.TrafficDirection_INBOUND,
					FilterChains:     []*listenerv3.FilterChain{chain},
				})
			}
		}
	}
	b.problem(r.finish(nil))
	return r, nil
}
