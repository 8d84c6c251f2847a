package server

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// KindMetadataKey is the node metadata key under which CSDS reports the
// kind the server classified a proxy as (PodSidecar, VMSidecar,
// ProxylessGRPC). It is added to a copy of the node; the proxy's own node
// is never changed.
const KindMetadataKey = "CONTROLPLANE_PROXY_KIND"

// nodeWithKind returns a copy of node whose metadata names the kind.
func nodeWithKind(node *corev3.Node, kind string) *corev3.Node {
	if node == nil || kind == "" {
		return node
	}
	c := proto.Clone(node).(*corev3.Node)
	if c.Metadata == nil {
		c.Metadata = &structpb.Struct{}
	}
	if c.Metadata.Fields == nil {
		c.Metadata.Fields = map[string]*structpb.Value{}
	}
	c.Metadata.Fields[KindMetadataKey] = structpb.NewStringValue(kind)
	return c
}
