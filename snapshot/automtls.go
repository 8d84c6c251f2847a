package snapshot

import (
	"cmp"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rawbufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/librarymesh/controlplane/meshname"
	"github.com/librarymesh/controlplane/registry"
)

// Automatic mTLS, as Istio does it: when a DestinationRule leaves tls
// unset, an endpoint whose workload has a sidecar (registry.Endpoint.TLSMode
// istio) is reached with Istio mTLS and any other in plaintext.
//
//   - Envoy sidecars choose per endpoint: the cluster carries two
//     transport_socket_matches, `tlsMode-istio` (mTLS, matching the endpoint
//     metadata envoy.transport_socket_match {tlsMode: istio} that EDS gives
//     endpoints with a sidecar) and `tlsMode-disabled` (plaintext, the rest).
//     The matches do not depend on the endpoints, so an endpoint change stays
//     an EDS-only push.
//   - Proxyless gRPC cannot: grpc-go rejects transport_socket_matches. Its
//     cluster uses mTLS when every ready endpoint has a sidecar and requires
//     mTLS on the port (PeerAuthentication STRICT), else plaintext. A grpc-go
//     server under PERMISSIVE serves plaintext only, and an Envoy sidecar
//     under PERMISSIVE accepts plaintext, so plaintext is what every
//     PERMISSIVE endpoint accepts. A mixed cluster (some endpoints STRICT
//     with a sidecar, some not) is plaintext: its STRICT endpoints refuse
//     the client until a DestinationRule (ISTIO_MUTUAL, or subsets) says how
//     to reach them.
//
// It applies to MESH_INTERNAL services with endpoints (STATIC or DNS), and
// not when the namespace or mesh PeerAuthentication of the service is
// DISABLE (as Istio infers a service's mode).

// applyAutoMTLS sets a cluster's transport sockets by automatic mTLS when
// the DestinationRule's TLS settings for it (tls, nil for none) leave the
// mode unset.
func (b *Builder) applyAutoMTLS(o *clusterOptions, svc *registry.Service, port registry.Port, tls *registry.ClientTLS, subset *registry.Subset, f clusterFlavor) {
	if !b.autoMTLSApplies(svc, tls) {
		return
	}
	sans := b.istioMutualSANs(svc, tls)
	if f == grpcClusters {
		if grpcAutoMTLS(b.view, b.opts.RootNamespace, svc, port, subset) {
			o.TLS = TransportSocket(GRPCUpstreamTlsContext(sans))
		}
		return
	}
	mtls := TransportSocket(UpstreamTlsContext(meshname.SNI(port.Number, subsetName(subset), svc.Hostname), sans))
	o.TLS, o.TLSMatches = nil, autoMTLSMatches(mtls)
}

// autoMTLSApplies reports whether automatic mTLS decides the service's
// transport: a mesh service with endpoints, a rule without tls, and a
// service-level PeerAuthentication that is not DISABLE.
func (b *Builder) autoMTLSApplies(svc *registry.Service, tls *registry.ClientTLS) bool {
	if svc.Location == registry.MeshExternal || svc.Resolution == registry.ResolutionNone {
		return false
	}
	if tls != nil && tls.Mode != registry.ClientTLSUnset {
		return false
	}
	return InboundMTLSMode(b.view.PeerAuthentications(), b.opts.RootNamespace, svc.Namespace, nil, 0) != registry.MTLSDisable
}

// grpcAutoMTLS reports whether a proxyless client's cluster for a service
// port (or one subset) uses mTLS: every ready endpoint has a sidecar and is
// STRICT on the port, and there is at least one.
func grpcAutoMTLS(v registry.View, rootNS string, svc *registry.Service, port registry.Port, subset *registry.Subset) bool {
	found := false
	for _, ep := range subsetEndpoints(v.Endpoints(svc.Hostname), subset) {
		if !ep.Ready {
			continue
		}
		mode := InboundMTLSMode(v.PeerAuthentications(), rootNS, cmp.Or(ep.Namespace, svc.Namespace), ep.Labels, ep.PortFor(port))
		if ep.TLSMode != meshname.TLSModeIstio || mode != registry.MTLSStrict {
			return false
		}
		found = true
	}
	return found
}

// grpcAutoMTLSChangedLocked reports whether new endpoints of hosts (view
// is the next revision) flip the automatic mTLS of a proxyless cluster b
// built: such a cluster must be rebuilt, so the EDS-only path cannot be taken.
func (b *Builder) grpcAutoMTLSChangedLocked(view registry.View, hosts []string) bool {
	seen := map[string]bool{}
	for key := range b.grpcOut {
		ns, _, _ := strings.Cut(key, "|") // scope.key: NAMESPACE, then |SIDECAR and |CLIENT (see scopeFor)
		if seen[ns] {
			continue
		}
		seen[ns] = true
		for _, h := range hosts {
			if b.grpcHostTLSChanged(view, ns, h) {
				return true
			}
		}
	}
	return false
}

// grpcHostTLSChanged reports whether the automatic mTLS of a proxyless
// cluster of host, for clients in ns, differs between b's view and view.
func (b *Builder) grpcHostTLSChanged(view registry.View, ns, host string) bool {
	svc, next := b.view.Service(host), view.Service(host)
	if svc == nil || next == nil {
		return true
	}
	dr := DestinationRuleFor(b.view.DestinationRules(), b.opts.RootNamespace, ns, svc)
	for _, port := range svc.Ports {
		for _, subset := range clusterSubsets(dr) {
			if !b.autoMTLSApplies(svc, clusterPolicy(dr, subset, port.Number).TLS) {
				continue
			}
			if grpcAutoMTLS(b.view, b.opts.RootNamespace, svc, port, subset) != grpcAutoMTLS(view, b.opts.RootNamespace, next, port, subset) {
				return true
			}
		}
	}
	return false
}

// clusterSubsets are the subsets a service port has clusters for: nil (the
// whole service), then the rule's.
func clusterSubsets(dr *registry.DestinationRule) []*registry.Subset {
	out := []*registry.Subset{nil}
	if dr != nil {
		for i := range dr.Subsets {
			out = append(out, &dr.Subsets[i])
		}
	}
	return out
}

// autoMTLSMatches are an Envoy cluster's transport socket matches: mTLS
// for endpoints with a sidecar, plaintext for the rest.
func autoMTLSMatches(mtls *corev3.TransportSocket) []*clusterv3.Cluster_TransportSocketMatch {
	return []*clusterv3.Cluster_TransportSocketMatch{{
		Name:            meshname.TLSModeIstioMatch,
		Match:           tlsModeStruct(meshname.TLSModeIstio),
		TransportSocket: mtls,
	}, {
		Name:            meshname.TLSModeDisabledMatch,
		Match:           &structpb.Struct{},
		TransportSocket: rawBufferSocket(),
	}}
}

// tlsModeMetadata is the endpoint metadata the matches read: tlsMode istio
// for an endpoint with a sidecar, nil (plaintext) for the rest.
func tlsModeMetadata(mode string) *corev3.Metadata {
	if mode != meshname.TLSModeIstio {
		return nil
	}
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
		meshname.TransportSocketMatchKey: tlsModeStruct(mode),
	}}
}

func tlsModeStruct(mode string) *structpb.Struct {
	return &structpb.Struct{Fields: map[string]*structpb.Value{meshname.TLSModeMatchField: structpb.NewStringValue(mode)}}
}

// rawBufferSocket is plaintext, named as a transport socket.
func rawBufferSocket() *corev3.TransportSocket {
	return &corev3.TransportSocket{
		Name:       rawBufferTransportSocketName,
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(&rawbufferv3.RawBuffer{})},
	}
}
