package server

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// Node metadata keys under which CSDS reports what the server knows of a
// connection: the kind it classified the proxy as (pod-sidecar, vm-sidecar,
// proxyless-grpc) and the connection's ID (two streams may claim one node
// ID). They are added to a copy of the node; the proxy's own node is never
// changed.
const (
	KindMetadataKey       = "CONTROLPLANE_PROXY_KIND"
	ConnectionMetadataKey = "CONTROLPLANE_CONNECTION_ID"
)

// annotatedNode returns a copy of a connection's node whose metadata names
// its kind and connection ID.
func annotatedNode(st connStatus) *corev3.Node {
	c := st.decodedNode()
	if c.Metadata == nil {
		c.Metadata = &structpb.Struct{}
	}
	if c.Metadata.Fields == nil {
		c.Metadata.Fields = map[string]*structpb.Value{}
	}
	c.Metadata.Fields[KindMetadataKey] = structpb.NewStringValue(st.kind)
	c.Metadata.Fields[ConnectionMetadataKey] = structpb.NewStringValue(st.id)
	return c
}
