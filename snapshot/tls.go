package snapshot

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/librarymesh/controlplane/meshname"
	"github.com/librarymesh/controlplane/snapshot/sdsconfig"
)

const (
	tlsTransportSocketName       = "envoy.transport_sockets.tls"
	rawBufferTransportSocketName = "envoy.transport_sockets.raw_buffer"
)

// uriSANMatchers matches any of the SPIFFE IDs as a URI SAN.
func uriSANMatchers(ids []string) []*tlsv3.SubjectAltNameMatcher {
	out := make([]*tlsv3.SubjectAltNameMatcher, 0, len(ids))
	for _, id := range ids {
		out = append(out, &tlsv3.SubjectAltNameMatcher{
			SanType: tlsv3.SubjectAltNameMatcher_URI,
			Matcher: exactMatcher(id),
		})
	}
	return out
}

func exactMatcher(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}

// sidecarCommonTLSContext presents the workload certificate (SDS `default`)
// and validates peers against the mesh root (SDS `ROOTCA`) and, when given,
// the allowed SPIFFE IDs.
func sidecarCommonTLSContext(sans []string, alpn []string) *tlsv3.CommonTlsContext {
	return &tlsv3.CommonTlsContext{
		AlpnProtocols:                  alpn,
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsconfig.SecretConfig(meshname.WorkloadSecret)},
		ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{
			CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: uriSANMatchers(sans)},
				ValidationContextSdsSecretConfig: sdsconfig.SecretConfig(meshname.RootSecret),
			},
		},
	}
}

// DownstreamTlsContext is an Envoy sidecar's inbound mesh mTLS.
func DownstreamTlsContext() *tlsv3.DownstreamTlsContext {
	return &tlsv3.DownstreamTlsContext{
		CommonTlsContext:         sidecarCommonTLSContext(nil, []string{"h2", "http/1.1"}),
		RequireClientCertificate: wrapperspb.Bool(true),
	}
}

// UpstreamTlsContext is an Envoy sidecar's outbound mesh mTLS to a service.
func UpstreamTlsContext(sni string, sans []string) *tlsv3.UpstreamTlsContext {
	return &tlsv3.UpstreamTlsContext{
		CommonTlsContext: sidecarCommonTLSContext(sans, istioMTLSALPN()),
		Sni:              sni,
	}
}

// grpcCommonTLSContext is mesh mTLS in grpc-go's form: certificate provider
// instances from the client's bootstrap instead of SDS. grpc-go reads
// match_subject_alt_names (not the typed form) and only on clients.
func grpcCommonTLSContext(sans []string) *tlsv3.CommonTlsContext {
	vc := &tlsv3.CertificateValidationContext{
		CaCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{
			InstanceName: meshname.GRPCProviderInstance, CertificateName: meshname.GRPCRootCert,
		},
	}
	for _, id := range sans {
		//lint:ignore SA1019 grpc-go v1.85 reads match_subject_alt_names, not the typed form.
		vc.MatchSubjectAltNames = append(vc.MatchSubjectAltNames, exactMatcher(id))
	}
	return &tlsv3.CommonTlsContext{
		TlsCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{
			InstanceName: meshname.GRPCProviderInstance, CertificateName: meshname.GRPCIdentityCert,
		},
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: vc},
	}
}

// GRPCDownstreamTlsContext is a proxyless gRPC server's mesh mTLS.
func GRPCDownstreamTlsContext() *tlsv3.DownstreamTlsContext {
	return &tlsv3.DownstreamTlsContext{
		CommonTlsContext:         grpcCommonTLSContext(nil),
		RequireClientCertificate: wrapperspb.Bool(true),
	}
}

// GRPCUpstreamTlsContext is a proxyless gRPC client's mesh mTLS to a service.
func GRPCUpstreamTlsContext(sans []string) *tlsv3.UpstreamTlsContext {
	return &tlsv3.UpstreamTlsContext{CommonTlsContext: grpcCommonTLSContext(sans)}
}

// TransportSocket wraps a TLS context for a cluster or filter chain.
func TransportSocket(ctx proto.Message) *corev3.TransportSocket {
	return &corev3.TransportSocket{
		Name:       tlsTransportSocketName,
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(ctx)},
	}
}

// mustAny marshals a message built in this package; failure is a programming error.
func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(fmt.Sprintf("snapshot: marshal %T: %v", m, err))
	}
	return a
}
