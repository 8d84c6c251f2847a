package snapshot

import (
	"cmp"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/librarymesh/controlplane/meshname"
	"github.com/librarymesh/controlplane/registry"
	"github.com/librarymesh/controlplane/snapshot/sdsconfig"
)

// credentialCASuffix names the CA half of a credentialName secret, as
// Istio's SDS does (`NAME-cacert`).
const credentialCASuffix = "-cacert"

// clusterTransportSocket is the one place that decides a cluster's
// transport socket from the DestinationRule's TLS settings for it (tls:
// the merged rule, port and subset settings; nil when the rule leaves TLS
// unset). subset is the cluster's subset name ("" for none).
func (b *Builder) clusterTransportSocket(ns string, svc *registry.Service, port registry.Port, subset string, tls *registry.ClientTLS, f clusterFlavor) *corev3.TransportSocket {
	if tls == nil || tls.Mode == registry.ClientTLSUnset {
		return b.unsetTransportSocket(ns, svc, port, subset, f)
	}
	switch tls.Mode {
	case registry.ClientTLSIstioMutual:
		if svc.Location == registry.MeshExternal {
			return nil // mesh mTLS is never used to leave the mesh
		}
		sans := b.istioMutualSANs(svc, tls)
		if f == grpcClusters {
			return TransportSocket(GRPCUpstreamTlsContext(sans))
		}
		return TransportSocket(UpstreamTlsContext(cmp.Or(tls.SNI, meshname.SNI(port.Number, subset, svc.Hostname)), sans))
	case registry.ClientTLSSimple, registry.ClientTLSMutual:
		if f == grpcClusters {
			// grpc-go only takes certificates from its bootstrap's
			// certificate providers, which hold the mesh identity alone.
			return nil
		}
		return TransportSocket(OriginatedTlsContext(tls))
	}
	return nil // DISABLE
}

// unsetTransportSocket is the transport socket of a cluster whose rule
// leaves TLS unset (or that has no rule): none here; automatic mTLS
// (applyAutoMTLS, automtls.go) then decides per endpoint.
func (b *Builder) unsetTransportSocket(string, *registry.Service, registry.Port, string, clusterFlavor) *corev3.TransportSocket {
	return nil
}

// OriginatedTlsContext is TLS an Envoy sidecar originates for SIMPLE or
// MUTUAL: the client certificate (MUTUAL) and the CA from files on the
// proxy or from the credentialName secret over SDS, the server name and
// the accepted SANs. insecureSkipVerify drops verification; with no CA
// given, the system roots are used.
func OriginatedTlsContext(tls *registry.ClientTLS) *tlsv3.UpstreamTlsContext {
	common := &tlsv3.CommonTlsContext{}
	if tls.Mode == registry.ClientTLSMutual {
		if tls.CredentialName != "" {
			common.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{sdsconfig.SecretConfig(tls.CredentialName)}
		} else {
			common.TlsCertificates = []*tlsv3.TlsCertificate{{
				CertificateChain: fileSource(tls.ClientCertificate), PrivateKey: fileSource(tls.PrivateKey),
			}}
		}
	}
	if !tls.InsecureSkipVerify {
		vc := &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: sanMatchers(tls.SubjectAltNames)}
		switch {
		case tls.CredentialName != "" || tls.CACertCredentialName != "":
			ca := cmp.Or(tls.CACertCredentialName, tls.CredentialName+credentialCASuffix)
			common.ValidationContextType = &tlsv3.CommonTlsContext_CombinedValidationContext{
				CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext:         vc,
					ValidationContextSdsSecretConfig: sdsconfig.SecretConfig(ca),
				}}
		case tls.CACertificates != "":
			vc.TrustedCa = fileSource(tls.CACertificates)
			common.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: vc}
		default:
			vc.SystemRootCerts = &tlsv3.CertificateValidationContext_SystemRootCerts{}
			common.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: vc}
		}
	}
	return &tlsv3.UpstreamTlsContext{CommonTlsContext: common, Sni: tls.SNI}
}

func fileSource(path string) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: path}}
}

// sanMatchers matches each name exactly: a URI SAN for a URI (spiffe://…),
// a DNS SAN otherwise.
func sanMatchers(sans []string) []*tlsv3.SubjectAltNameMatcher {
	var out []*tlsv3.SubjectAltNameMatcher
	for _, s := range sans {
		t := tlsv3.SubjectAltNameMatcher_DNS
		if strings.Contains(s, "://") {
			t = tlsv3.SubjectAltNameMatcher_URI
		}
		out = append(out, &tlsv3.SubjectAltNameMatcher{SanType: t, Matcher: exactMatcher(s)})
	}
	return out
}
