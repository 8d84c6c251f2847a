package snapshot

import (
	"fmt"
	"sync"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/librarymesh/controlplane/meshname"
	"github.com/librarymesh/controlplane/registry"
)

// buildPodInbound is a pod sidecar's own part: virtualInbound on 15006 with
// a filter chain per port the pod serves, and the inbound clusters.
func (b *Builder) buildPodInbound(w *registry.Workload) (*Resources, error) {
	r := &Resources{}
	var chains []*listenerv3.FilterChain
	authz := b.authzFor(w)
	for _, ip := range b.inboundPorts(w) {
		spec := chainSpec{
			name:  func(tls bool) string { return meshname.InboundFilterChain(ip.target, tls) },
			match: func(transport string) *listenerv3.FilterChainMatch { return b.portMatch(ip.target, transport) },
		}
		chains = append(chains, b.inboundFilterChains(ip.mode, spec, b.inboundFilters(ip, authz))...)
		r.Clusters = append(r.Clusters, b.inboundCluster(ip))
	}
	mode := InboundMTLSMode(b.view.PeerAuthentications(), b.opts.RootNamespace, w.Namespace, w.Labels, 0)
	if rbac := networkRBACFilters(b.inboundRBAC(authzTarget{policies: authz, tcp: true})); len(rbac) > 0 {
		chains = append(chains, b.inboundFilterChains(mode, virtualInboundCatchAll, append(rbac, b.pieces.inboundPassthrough))...)
	} else {
		chains = append(chains, b.pieces.catchAll[mode]...)
	}
	r.Listeners = append(r.Listeners, &listenerv3.Listener{
		Name:             meshname.VirtualInboundListener,
		Address:          b.pieces.virtualInboundAddress,
		TrafficDirection: corev3.TrafficDirection_INBOUND,
		ListenerFilters:  b.pieces.virtualInboundFilters,
		UseOriginalDst:   b.pieces.useOriginalDst,
		FilterChains:     chains,
	})
	b.problem(r.finish(nil))
	return r, nil
}

// buildVMInbound is a VM sidecar's own part: for each port it serves, a
// listener bound to the VM's IP (no iptables on a VM) forwarding to the app
// on 127.0.0.1, logging each connection to the access log file.
func (b *Builder) buildVMInbound(w *registry.Workload) (*Resources, error) {
	r := &Resources{}
	authz := b.authzFor(w)
	for _, ip := range b.inboundPorts(w) {
		spec := chainSpec{
			name:  func(tls bool) string { return meshname.InboundFilterChain(ip.target, tls) },
			match: transportMatch,
		}
		l := &listenerv3.Listener{
			Name:             meshname.InboundListener(ip.number, ip.port.Name, ip.svc.Hostname),
			Address:          SocketAddress(w.Address, ip.target),
			TrafficDirection: corev3.TrafficDirection_INBOUND,
			FilterChains:     b.inboundFilterChains(ip.mode, spec, b.inboundFilters(ip, authz, b.pieces.accessLog)),
		}
		if ip.mode == registry.MTLSPermissive {
			l.ListenerFilters = b.pieces.tlsInspector
		}
		r.Listeners = append(r.Listeners, l)
		r.Clusters = append(r.Clusters, b.inboundCluster(ip))
	}
	b.problem(r.finish(nil))
	return r, nil
}

// virtualInboundCatchAll names and matches the virtual inbound listener's
// catch-all chains.
var virtualInboundCatchAll = chainSpec{name: meshname.VirtualInboundCatchAllChain, match: transportMatch}

// transportMatch matches only on the transport protocol, if any.
func transportMatch(transport string) *listenerv3.FilterChainMatch {
	if transport == "" {
		return nil
	}
	return &listenerv3.FilterChainMatch{TransportProtocol: transport}
}

// inboundPort is one port a workload serves, with the service that names it.
type inboundPort struct {
	svc    *registry.Service
	port   registry.Port
	target uint32
	mode   registry.MTLSMode
	number uint32 // the port number in its names (see nameNumber)
}

// cluster is the port's meshname.InboundCluster.
func (ip inboundPort) cluster() string {
	return meshname.InboundCluster(ip.number, ip.port.Name, ip.svc.Hostname)
}

// inboundPorts lists the ports a workload serves, one per target port (the
// first service by hostname wins), with the mTLS mode policy gives each; on
// a VM also those of other instances at its address (servedInstances).
func (b *Builder) inboundPorts(w *registry.Workload) []inboundPort {
	var out []inboundPort
	seen := map[uint32]bool{}
	pas := b.view.PeerAuthentications()
	for _, svc := range b.view.ServicesForWorkload(w) {
		for _, port := range svc.Ports {
			for i, in := range b.servedInstances(w, svc, port) {
				if seen[in.target] {
					continue
				}
				seen[in.target] = true
				mode := InboundMTLSMode(pas, b.opts.RootNamespace, w.Namespace, in.labels, in.target)
				out = append(out, inboundPort{svc: svc, port: port, target: in.target, mode: mode, number: nameNumber(i == 0, port, in.target)})
			}
		}
	}
	return out
}

// inboundFilters are the network filters that authorize an inbound
// connection (or each request) and hand it to the local app, logging to logs.
func (b *Builder) inboundFilters(ip inboundPort, authz workloadAuthz, logs ...*accesslogv3.AccessLog) []*listenerv3.Filter {
	rbac := b.inboundRBAC(ip.authzTarget(authz, false))
	if !ip.port.Protocol.IsHTTP() {
		return append(networkRBACFilters(rbac), TCPProxyFilter(ip.cluster(), ip.cluster(), logs...))
	}
	hcm := hcmOptions{Logs: logs, Filters: httpRBACFilters(rbac)}
	hcm.Inline = RouteConfiguration(ip.cluster(), VirtualHost(meshname.InboundVirtualHost(ip.target), []string{"*"},
		RouteToCluster(meshname.DefaultRoute, ip.cluster())))
	return []*listenerv3.Filter{HCMFilter(HTTPConnectionManager(ip.cluster(), hcm))}
}

// authzTarget is what the port's authorization is built for.
func (ip inboundPort) authzTarget(authz workloadAuthz, proxyless bool) authzTarget {
	// A proxyless gRPC server speaks HTTP/2 whatever the port's protocol says.
	return authzTarget{policies: authz, port: ip.target, tcp: !proxyless && !ip.port.Protocol.IsHTTP(), proxyless: proxyless,
		where: fmt.Sprintf("port %d of %s (port %s, protocol %s)", ip.target, ip.svc.Hostname, ip.port.Name, ip.port.Protocol)}
}

// chainSpec says how to name and match an inbound filter chain.
type chainSpec struct {
	name  func(tls bool) string
	match func(transport string) *listenerv3.FilterChainMatch
}

// inboundFilterChains applies an mTLS mode: STRICT one TLS chain, PERMISSIVE
// a TLS and a plaintext chain told apart by tls_inspector, DISABLE plaintext.
func (b *Builder) inboundFilterChains(mode registry.MTLSMode, spec chainSpec, fs []*listenerv3.Filter) []*listenerv3.FilterChain {
	tls := b.pieces.downstreamTLS
	switch mode {
	case registry.MTLSStrict:
		return []*listenerv3.FilterChain{b.markTrust(FilterChain(spec.name(true), spec.match(""), tls, fs...))}
	case registry.MTLSDisable:
		return []*listenerv3.FilterChain{FilterChain(spec.name(false), spec.match(""), nil, fs...)}
	}
	return []*listenerv3.FilterChain{
		b.markTrust(FilterChain(spec.name(true), spec.match(transportProtocolTLS), tls, fs...)),
		FilterChain(spec.name(false), spec.match(transportProtocolRaw), nil, fs...),
	}
}

// inboundCluster is the STATIC cluster to the app on 127.0.0.1.
func (b *Builder) inboundCluster(ip inboundPort) *clusterv3.Cluster {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: ip.cluster(), Endpoints: b.localEndpoints(ip.target)}
	return StaticCluster(cla, clusterOptions{HTTP2: ip.port.Protocol.IsHTTP2()})
}

// portMatch matches a virtual inbound chain to port and transport, made
// once per Builder and shared as localEndpoints is.
func (b *Builder) portMatch(port uint32, transport string) *listenerv3.FilterChainMatch {
	return madeOnce(&b.matches, portTransport{port, transport}, func() *listenerv3.FilterChainMatch {
		return &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(port), TransportProtocol: transport}
	})
}

type portTransport struct {
	port      uint32
	transport string
}

// localEndpoints returns LocalClusterLoadAssignment's endpoints for port,
// made once per Builder and shared by every inbound cluster to the port: a
// proxy's own protos stay in memory while it is connected, and a thousand
// sidecars' inbound clusters to one port need one endpoint between them.
func (b *Builder) localEndpoints(port uint32) []*endpointv3.LocalityLbEndpoints {
	return madeOnce(&b.local, port, func() []*endpointv3.LocalityLbEndpoints {
		return LocalClusterLoadAssignment("", port).Endpoints
	})
}

// madeOnce returns m's value for k, made with make and stored if m has
// none: own parts are built concurrently, and two builds making the same
// value at once both get the one stored.
func madeOnce[K comparable, V any](m *sync.Map, k K, make func() V) V {
	if v, ok := m.Load(k); ok {
		return v.(V)
	}
	v, _ := m.LoadOrStore(k, make())
	return v.(V)
}
