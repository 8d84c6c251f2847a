package snapshot

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/librarymesh/controlplane/registry"
)

// buildPodInbound is a pod sidecar's own part: virtualInbound on 15006 with
// a filter chain per port the pod serves, and the inbound clusters.
func (b *Builder) buildPodInbound(w *registry.Workload) (*Resources, error) {
	r := &Resources{}
	var chains []*listenerv3.FilterChain
	for _, ip := range b.inboundPorts(w) {
		match := func(transport string) *listenerv3.FilterChainMatch {
			return &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(ip.target), TransportProtocol: transport}
		}
		chains = append(chains, inboundFilterChains(ip, match, inboundFilter(ip, ""))...)
		r.Clusters = append(r.Clusters, inboundCluster(ip))
	}
	passthrough := inboundPort{
		svc: &registry.Service{}, port: registry.Port{},
		mode: InboundMTLSMode(b.view.PeerAuthentications(), b.opts.RootNamespace, w.Namespace, w.Labels, 0),
	}
	for _, fc := range inboundFilterChains(passthrough, transportMatch, TCPProxyFilter(InboundPassthroughCluster, InboundPassthroughCluster)) {
		fc.Name = "virtualInbound-catchall-" + fc.GetName()[len("inbound|0|"):]
		chains = append(chains, fc)
	}
	r.Listeners = append(r.Listeners, &listenerv3.Listener{
		Name:             VirtualInboundListenerName,
		Address:          SocketAddress(wildcardAddress, VirtualInboundPort),
		TrafficDirection: corev3.TrafficDirection_INBOUND,
		ListenerFilters:  []*listenerv3.ListenerFilter{OriginalDst(), TLSInspector()},
		UseOriginalDst:   wrapperspb.Bool(true),
		FilterChains:     chains,
	})
	return r, r.finish()
}

// buildVMInbound is a VM sidecar's own part: for each port it serves, a
// listener bound to the VM's IP (no iptables on a VM) forwarding to the app
// on 127.0.0.1, logging each connection to the access log file.
func (b *Builder) buildVMInbound(w *registry.Workload) (*Resources, error) {
	r := &Resources{}
	for _, ip := range b.inboundPorts(w) {
		l := &listenerv3.Listener{
			Name:             InboundListenerName(ip.port.Number, ip.port.Name, ip.svc.Hostname),
			Address:          SocketAddress(w.Address, ip.target),
			TrafficDirection: corev3.TrafficDirection_INBOUND,
			FilterChains:     inboundFilterChains(ip, transportMatch, inboundFilter(ip, b.opts.AccessLogPath)),
		}
		if ip.mode == registry.MTLSPermissive {
			l.ListenerFilters = []*listenerv3.ListenerFilter{TLSInspector()}
		}
		r.Listeners = append(r.Listeners, l)
		r.Clusters = append(r.Clusters, inboundCluster(ip))
	}
	return r, r.finish()
}

// transportMatch matches only on the transport protocol, if any.
func transportMatch(transport string) *listenerv3.FilterChainMatch {
	if transport == "" {
		return nil
	}
	return &listenerv3.FilterChainMatch{TransportProtocol: transport}
}
