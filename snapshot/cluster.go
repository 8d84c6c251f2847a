package snapshot

import (
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/librarymesh/controlplane/meshname"
)

const httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// clusterOptions are the variants of a cluster; the zero value is plain HTTP/1 or TCP.
type clusterOptions struct {
	HTTP2 bool
	TLS   *corev3.TransportSocket
	// TLSMatches pick a transport socket per endpoint (automatic mTLS).
	TLSMatches []*clusterv3.Cluster_TransportSocketMatch
	// Metadata names the trust bundle of a cluster that validates peers.
	Metadata *corev3.Metadata
}

// adsConfigSource points at the ADS stream the proxy already has.
func adsConfigSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

// baseCluster sets the defaults every cluster shares.
func baseCluster(name string, t clusterv3.Cluster_DiscoveryType, o clusterOptions) *clusterv3.Cluster {
	c := &clusterv3.Cluster{
		Name:                   name,
		ClusterDiscoveryType:   &clusterv3.Cluster_Type{Type: t},
		ConnectTimeout:         durationpb.New(DefaultConnectTimeout),
		LbPolicy:               clusterv3.Cluster_ROUND_ROBIN,
		TransportSocket:        o.TLS,
		TransportSocketMatches: o.TLSMatches,
		Metadata:               o.Metadata,
	}
	if o.HTTP2 {
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpProtocolOptionsKey: mustAny(http2ProtocolOptions())}
	}
	return c
}

func http2ProtocolOptions() *httpv3.HttpProtocolOptions {
	return &httpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
					Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
				},
			},
		},
	}
}

// EDSCluster gets its endpoints over ADS.
func EDSCluster(name string, o clusterOptions) *clusterv3.Cluster {
	c := baseCluster(name, clusterv3.Cluster_EDS, o)
	c.EdsClusterConfig = &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsConfigSource()}
	return c
}

// StrictDNSCluster resolves its endpoints' DNS names (ServiceEntry resolution DNS).
func StrictDNSCluster(cla *endpointv3.ClusterLoadAssignment, o clusterOptions) *clusterv3.Cluster {
	c := baseCluster(cla.GetClusterName(), clusterv3.Cluster_STRICT_DNS, o)
	c.DnsLookupFamily = clusterv3.Cluster_V4_ONLY
	c.LoadAssignment = cla
	return c
}

// OriginalDstCluster forwards to the address the connection was sent to.
func OriginalDstCluster(name string, o clusterOptions) *clusterv3.Cluster {
	c := baseCluster(name, clusterv3.Cluster_ORIGINAL_DST, o)
	c.LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED
	return c
}

// StaticCluster sends to fixed addresses, e.g. an inbound cluster to 127.0.0.1.
func StaticCluster(cla *endpointv3.ClusterLoadAssignment, o clusterOptions) *clusterv3.Cluster {
	c := baseCluster(cla.GetClusterName(), clusterv3.Cluster_STATIC, o)
	c.LoadAssignment = cla
	return c
}

// BlackHoleCluster drops everything.
func BlackHoleCluster() *clusterv3.Cluster {
	return StaticCluster(&endpointv3.ClusterLoadAssignment{ClusterName: meshname.BlackHoleCluster}, clusterOptions{})
}
