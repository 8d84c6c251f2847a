package snapshot

import (
	"fmt"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/librarymesh/controlplane/meshname"
	"github.com/librarymesh/controlplane/registry"
)

// GatewayListener binds a gateway server port on every address.
func GatewayListener(name string, port uint32, chains []*listenerv3.FilterChain) *listenerv3.Listener {
	return &listenerv3.Listener{
		Name:             name,
		Address:          SocketAddress("0.0.0.0", port),
		TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		FilterChains:     chains,
	}
}

// credentialSecretConfig names a gateway credential served over the
// proxy's ADS stream, as Istio's gateways fetch them.
func credentialSecretConfig(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: adsConfigSource()}
}

// GatewayTlsContext terminates TLS with a server's credential
// (`kubernetes://NAME` over SDS); MUTUAL also requires a client
// certificate signed by the credential's CA (`kubernetes://NAME-cacert`)
// and, when listed, with one of the subjectAltNames.
func GatewayTlsContext(t *registry.ServerTLS, http bool) *tlsv3.DownstreamTlsContext {
	ctx := &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{credentialSecretConfig(meshname.CredentialSecret(t.CredentialName))},
	}}
	if http {
		ctx.CommonTlsContext.AlpnProtocols = []string{"h2", "http/1.1"}
	}
	if t.Mode == registry.TLSMutual {
		ctx.RequireClientCertificate = wrapperspb.Bool(true)
		ctx.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_CombinedValidationContext{
			CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: dnsSANMatchers(t.SubjectAltNames)},
				ValidationContextSdsSecretConfig: credentialSecretConfig(meshname.CredentialCASecret(t.CredentialName)),
			},
		}
	}
	return ctx
}

func dnsSANMatchers(sans []string) []*tlsv3.SubjectAltNameMatcher {
	var out []*tlsv3.SubjectAltNameMatcher
	for _, s := range sans {
		out = append(out, &tlsv3.SubjectAltNameMatcher{SanType: tlsv3.SubjectAltNameMatcher_DNS, Matcher: exactMatcher(s)})
	}
	return out
}

// gatewayStreamChains are the filter chains of a TLS/TCP port: for
// PASSTHROUGH servers one chain per SNI set of the bound VirtualServices'
// TLS routes; for other servers (TCP, or TLS terminated with a
// credential) one chain forwarding to the first bound TCP route.
func (b *Builder) gatewayStreamChains(vc *vsContext, port uint32, servers []gatewayServer) []*listenerv3.FilterChain {
	var chains []*listenerv3.FilterChain
	seen := map[string]bool{}
	for _, s := range servers {
		vc.gateway = s.gw.Ref()
		if s.srv.TLS != nil && s.srv.TLS.Mode == registry.TLSPassthrough {
			chains = append(chains, b.passthroughChains(vc, port, s, seen)...)
		} else if c := b.tcpChain(vc, port, s); c != nil {
			chains = append(chains, c)
		}
	}
	vc.gateway = ""
	return chains
}

// passthroughChains route a PASSTHROUGH server's connections by SNI: each
// TLS route match of a bound VirtualService names SNI hosts the server
// binds (an SNI goes to the first chain naming it).
func (b *Builder) passthroughChains(vc *vsContext, port uint32, s gatewayServer, seen map[string]bool) []*listenerv3.FilterChain {
	var out []*listenerv3.FilterChain
	for _, vs := range b.view.VirtualServices() {
		if !vs.BoundTo(s.gw) || !vs.ExportedTo(vc.ns) {
			continue
		}
		for i := range vs.TLS {
			r := &vs.TLS[i]
			for j, m := range r.Matches {
				if !vc.l4MatchApplies(m, port) {
					continue
				}
				snis := slices.DeleteFunc(slices.Clone(m.SNIHosts), func(h string) bool { return seen[h] || !s.srv.BindsHost(s.gw.Namespace, vs.Namespace, h) })
				dests := vc.destinations(r.Route, port)
				if len(snis) == 0 || len(dests) == 0 {
					continue
				}
				for _, h := range snis {
					seen[h] = true
				}
				name := fmt.Sprintf("%s|%s/%s|tls|%d.%d", meshname.GatewayListener(port), vs.Namespace, vs.Name, i, j)
				out = append(out, FilterChain(name, &listenerv3.FilterChainMatch{ServerNames: snis}, nil, TCPProxyToDestinations(dests)))
			}
		}
	}
	return out
}

// tcpChain forwards a TCP server's connections (decrypted first when it
// terminates TLS) to the first TCP route of a bound VirtualService.
func (b *Builder) tcpChain(vc *vsContext, port uint32, s gatewayServer) *listenerv3.FilterChain {
	for _, vs := range b.view.VirtualServices() {
		if !vs.BoundTo(s.gw) || !vs.ExportedTo(vc.ns) || !slices.ContainsFunc(vs.Hosts, func(h string) bool { return s.srv.BindsHost(s.gw.Namespace, vs.Namespace, h) }) {
			continue
		}
		dests := vc.tcpDestinations(vs, port)
		if len(dests) == 0 {
			continue
		}
		var ts *corev3.TransportSocket
		var match *listenerv3.FilterChainMatch
		if s.srv.TLS != nil {
			ts, match = TransportSocket(GatewayTlsContext(s.srv.TLS, false)), serverNameMatch(s.srv)
		}
		name := fmt.Sprintf("%s|%s/%s|tcp", meshname.GatewayListener(port), vs.Namespace, vs.Name)
		return FilterChain(name, match, ts, TCPProxyToDestinations(dests))
	}
	return nil
}

// gatewaySecrets are the credentials the scope's terminating servers name,
// from Secrets of the proxy's namespace: `kubernetes://NAME` (certificate
// and key) and, for MUTUAL, `kubernetes://NAME-cacert` (the Secret's CA,
// else the CA of Secret NAME-cacert). A missing one is a problem; the
// proxy waits for it (Envoy keeps such a listener warming).
func (b *Builder) gatewaySecrets(sc *scope) []types.Resource {
	var out []types.Resource
	for _, g := range sc.gateways {
		for i := range g.Servers {
			t := g.Servers[i].TLS
			if t == nil || t.Mode == registry.TLSPassthrough || t.CredentialName == "" {
				continue
			}
			if s := b.credentialSecret(sc.ns, g, &g.Servers[i]); s != nil {
				out = append(out, s)
			}
			if t.Mode != registry.TLSMutual {
				continue
			}
			if s := b.caSecret(sc.ns, g, &g.Servers[i]); s != nil {
				out = append(out, s)
			}
		}
	}
	return out
}

func (b *Builder) credentialSecret(ns string, g *registry.Gateway, srv *registry.GatewayServer) *tlsv3.Secret {
	name := srv.TLS.CredentialName
	c := b.view.Credential(ns, name)
	if c == nil || c.Key == nil {
		b.credentialProblem(g, srv, fmt.Sprintf("no Secret %s/%s with a certificate and key (tls.crt/tls.key or cert/key); the listener waits for it", ns, name))
		return nil
	}
	return CredentialSecret(meshname.CredentialSecret(name), c)
}

func (b *Builder) caSecret(ns string, g *registry.Gateway, srv *registry.GatewayServer) *tlsv3.Secret {
	name := srv.TLS.CredentialName
	for _, n := range []string{name, name + meshname.CASecretSuffix} {
		if c := b.view.Credential(ns, n); c != nil && c.CA != nil {
			return CASecret(meshname.CredentialCASecret(name), c.CA)
		}
	}
	b.credentialProblem(g, srv, fmt.Sprintf("MUTUAL needs a CA: no ca.crt in Secret %s/%s and no Secret %s/%s%s", ns, name, ns, name, meshname.CASecretSuffix))
	return nil
}

func (b *Builder) credentialProblem(g *registry.Gateway, srv *registry.GatewayServer, msg string) {
	b.problemLocked(registry.Problem{Object: registry.KindGateway + " " + g.Ref(),
		Field: srv.Field + ".tls.credentialName", Reason: ReasonMissingCredential, Message: msg})
}

// CredentialSecret is an SDS certificate and key, inline.
func CredentialSecret(name string, c *registry.Credential) *tlsv3.Secret {
	return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: inlineBytes(c.Cert),
		PrivateKey:       inlineBytes(c.Key),
	}}}
}

// CASecret is an SDS validation context trusting the CA certificates.
func CASecret(name string, ca []byte) *tlsv3.Secret {
	return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		TrustedCa: inlineBytes(ca),
	}}}
}

func inlineBytes(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
}

// RedactedKey replaces private keys in debug views (CSDS, config_dump,
// golden files).
const RedactedKey = "[redacted]"

// RedactSecret returns s with its private key replaced by RedactedKey (a
// copy; s is never modified), or s itself when it holds no key.
func RedactSecret(s *tlsv3.Secret) *tlsv3.Secret {
	tc := s.GetTlsCertificate()
	if tc.GetPrivateKey() == nil {
		return s
	}
	return &tlsv3.Secret{Name: s.GetName(), Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: tc.GetCertificateChain(),
		PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: RedactedKey}},
	}}}
}
