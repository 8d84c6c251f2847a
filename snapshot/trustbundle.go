package snapshot

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// trustBundleMetadataKey is the filter_metadata namespace naming the trust
// bundle a resource's validation context was made for. Envoy and grpc-go
// ignore it; it makes a new bundle a new version of every resource that
// validates peers, so a proxy's ACK says it took the configuration of that
// bundle (the roots themselves come from SDS ROOTCA or the gRPC certificate
// provider, which the node agent keeps current).
const trustBundleMetadataKey = "controlplane.trust_bundle"

// trustBundleMetadata is the metadata of Options.TrustBundle, nil when unset.
func trustBundleMetadata(id string) *corev3.Metadata {
	if id == "" {
		return nil
	}
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
		trustBundleMetadataKey: {Fields: map[string]*structpb.Value{"id": structpb.NewStringValue(id)}},
	}}
}

// markTrust names the trust bundle on a filter chain that validates peers
// (one with a transport socket), and returns it.
func (b *Builder) markTrust(c *listenerv3.FilterChain) *listenerv3.FilterChain {
	if c.TransportSocket != nil {
		c.Metadata = b.pieces.trustMeta
	}
	return c
}

// clusterTrust is the metadata of a cluster with a TLS transport socket.
func (b *Builder) clusterTrust(o clusterOptions) *corev3.Metadata {
	if o.TLS == nil && len(o.TLSMatches) == 0 {
		return nil
	}
	return b.pieces.trustMeta
}
