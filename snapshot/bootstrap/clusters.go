package bootstrap

import (
	"fmt"
	"net/netip"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/librarymesh/controlplane/meshname"
	"github.com/librarymesh/controlplane/snapshot/sdsconfig"
)

const (
	httpProtocolOptionsName = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
	tlsTransportSocketName  = "envoy.transport_sockets.tls"
)

// xdsCluster is the control plane connection: HTTP/2 over TLS with the
// server name as SNI, the server cert checked against the mesh root file,
// and the client cert from the agent over SDS.
func xdsCluster(host string, port uint32, o Options) (*clusterv3.Cluster, error) {
	tls := &tlsv3.UpstreamTlsContext{
		Sni: o.ServerName,
		CommonTlsContext: &tlsv3.CommonTlsContext{
			AlpnProtocols:                  []string{"h2"},
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsconfig.SecretConfig(meshname.WorkloadSecret)},
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: o.RootCertPath}},
				MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
					SanType: tlsv3.SubjectAltNameMatcher_DNS,
					Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: o.ServerName}},
				}},
			}},
		},
	}
	tlsAny, err := anypb.New(tls)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: pack upstream TLS context: %w", err)
	}
	c, err := http2Cluster(meshname.XDSCluster, socketAddress(host, port))
	if err != nil {
		return nil, err
	}
	c.ClusterDiscoveryType = discoveryType(host)
	c.TransportSocket = &corev3.TransportSocket{
		Name:       tlsTransportSocketName,
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: tlsAny},
	}
	return c, nil
}

// sdsCluster reaches the node agent on its Unix socket.
func sdsCluster(socket string) (*clusterv3.Cluster, error) {
	addr := &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: socket}}}
	c, err := http2Cluster(meshname.SDSCluster, addr)
	if err != nil {
		return nil, err
	}
	c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
	return c, nil
}

func http2Cluster(name string, addr *corev3.Address) (*clusterv3.Cluster, error) {
	opts, err := anypb.New(&httpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
				Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
			},
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("bootstrap: pack HTTP protocol options: %w", err)
	}
	return &clusterv3.Cluster{
		Name:           name,
		ConnectTimeout: durationpb.New(connectTimeout),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: addr}},
			}}}},
		},
		TypedExtensionProtocolOptions: map[string]*anypb.Any{httpProtocolOptionsName: opts},
	}, nil
}

// discoveryType is STATIC for an IP and STRICT_DNS for a name.
func discoveryType(host string) *clusterv3.Cluster_Type {
	if _, err := netip.ParseAddr(host); err == nil {
		return &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
	}
	return &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS}
}

func dynamicResources(sotw bool) *bootstrapv3.Bootstrap_DynamicResources {
	api := corev3.ApiConfigSource_DELTA_GRPC
	if sotw {
		api = corev3.ApiConfigSource_GRPC
	}
	ads := func() *corev3.ConfigSource {
		return &corev3.ConfigSource{
			ResourceApiVersion:    corev3.ApiVersion_V3,
			ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		}
	}
	return &bootstrapv3.Bootstrap_DynamicResources{
		AdsConfig: &corev3.ApiConfigSource{
			ApiType:                   api,
			TransportApiVersion:       corev3.ApiVersion_V3,
			SetNodeOnFirstMessageOnly: true,
			GrpcServices: []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
				EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: meshname.XDSCluster},
			}}},
		},
		LdsConfig: ads(),
		CdsConfig: ads(),
	}
}
