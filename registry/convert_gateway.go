package registry

import (
	"encoding/pem"
	"fmt"
	"maps"
	"slices"
	"strings"

	networkingapi "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	networkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	networkingv1beta1 "istio.io/client-go/pkg/apis/networking/v1beta1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// convertGateway converts the Gateway and Secret kinds.
func (c *converter) convertGateway(key ObjectKey, obj runtime.Object, p *problems) (*record, bool) {
	switch o := obj.(type) {
	case *networkingv1.Gateway:
		return gateway(key, &o.Spec, obj, p), true
	case *networkingv1beta1.Gateway:
		return gateway(key, &o.Spec, obj, p), true
	case *networkingv1alpha3.Gateway:
		return gateway(key, &o.Spec, obj, p), true
	case *corev1.Secret:
		return credential(key, o, p), true
	}
	return nil, false
}

// gateway converts a Gateway. A bad server (port, protocol, hosts, TLS)
// rejects the object, whose last good version stays in force.
func gateway(key ObjectKey, in *networkingapi.Gateway, obj runtime.Object, p *problems) *record {
	gw := &Gateway{Namespace: key.Namespace, Name: key.Name, Selector: maps.Clone(in.GetSelector()), Created: creationTime(obj)}
	if len(in.GetServers()) == 0 {
		p.add("spec.servers", "MissingServers", "a Gateway needs at least one server")
	}
	byPort := map[uint32]int{}
	for i, s := range in.GetServers() {
		srv := gatewayServer(fmt.Sprintf("spec.servers[%d]", i), s, p)
		if j, ok := byPort[srv.Port]; ok && srv.Port != 0 && !sameProtocolFamily(gw.Servers[j], srv) {
			p.add(srv.Field+".port.protocol", "PortConflict", "port %d is %s here but %s in spec.servers[%d]; one port serves one protocol",
				srv.Port, srv.Protocol, gw.Servers[j].Protocol, j)
		} else if !ok {
			byPort[srv.Port] = i
		}
		gw.Servers = append(gw.Servers, srv)
	}
	return &record{Policies: []*policyRow{{Namespace: key.Namespace, Gateway: gw}}}
}

// sameProtocolFamily reports whether two servers may share a port: both
// terminate to HTTP (HTTP, HTTPS), or both route TLS or TCP streams.
func sameProtocolFamily(a, b GatewayServer) bool {
	return serverIsHTTP(a) == serverIsHTTP(b)
}

// serverIsHTTP reports whether a server runs an HTTP connection manager:
// HTTP ones, and HTTPS ones that terminate TLS.
func serverIsHTTP(s GatewayServer) bool {
	return s.Protocol.IsHTTP() || (s.Protocol == ProtocolHTTPS && s.TLS != nil && s.TLS.Mode != TLSPassthrough)
}

// ServesHTTP reports whether the server runs an HTTP connection manager.
func (s *GatewayServer) ServesHTTP() bool { return serverIsHTTP(*s) }

// gatewayProtocols are the server protocols Istio's Gateway accepts.
var gatewayProtocols = []Protocol{ProtocolHTTP, ProtocolHTTPS, ProtocolHTTP2, ProtocolGRPC, ProtocolTLS, ProtocolTCP, "GRPC-WEB", "MONGO", "REDIS", "MYSQL"}

func gatewayServer(field string, in *networkingapi.Server, p *problems) GatewayServer {
	port := in.GetPort()
	s := GatewayServer{Field: field, Name: in.GetName(), Port: port.GetNumber(), PortName: port.GetName(),
		Protocol: Protocol(strings.ToUpper(port.GetProtocol()))}
	switch {
	case port == nil:
		p.add(field+".port", "MissingPort", "a server needs a port")
	case s.Port == 0 || s.Port > 65535:
		p.add(field+".port.number", "InvalidPort", "port %d is not in 1-65535", s.Port)
	}
	if port != nil && !slices.Contains(gatewayProtocols, s.Protocol) {
		p.add(field+".port.protocol", "InvalidProtocol", "protocol %q is not one of HTTP, HTTPS, HTTP2, GRPC, TLS, TCP", port.GetProtocol())
	}
	if port.GetTargetPort() != 0 {
		p.add(field+".port.targetPort", ReasonUnsupportedField, "targetPort is not supported; the listener binds port %d", s.Port)
	}
	if in.GetBind() != "" || in.GetDefaultEndpoint() != "" {
		p.add(field, ReasonUnsupportedField, "bind and defaultEndpoint are not supported; the listener binds 0.0.0.0")
	}
	s.Hosts = gatewayHosts(field+".hosts", in.GetHosts(), p)
	s.TLS = serverTLS(field, s.Protocol, in.GetTls(), p)
	return s
}

// gatewayHosts reads `namespace/dnsName` hosts; a bare dnsName is any namespace's.
func gatewayHosts(field string, in []string, p *problems) []EgressHost {
	if len(in) == 0 {
		p.add(field, "MissingHosts", "a server needs at least one host (\"*\" for any)")
	}
	var out []EgressHost
	for i, h := range in {
		if !strings.Contains(h, "/") {
			h = "*/" + h
		}
		eh, err := ParseEgressHost(h)
		if err == nil && eh.Namespace == "~" {
			err = fmt.Errorf("%q: namespace \"~\" binds nothing", in[i])
		}
		if err != nil {
			p.add(fmt.Sprintf("%s[%d]", field, i), "InvalidHost", "%v", err)
			continue
		}
		out = append(out, eh)
	}
	return out
}

// serverTLS checks a server's TLS against its protocol: HTTPS and TLS
// servers need tls; SIMPLE and MUTUAL need a credentialName.
func serverTLS(field string, proto Protocol, in *networkingapi.ServerTLSSettings, p *problems) *ServerTLS {
	if in == nil {
		if proto == ProtocolHTTPS || proto == ProtocolTLS {
			p.add(field+".tls", "MissingTLS", "protocol %s needs tls settings (mode PASSTHROUGH, SIMPLE or MUTUAL)", proto)
		}
		return nil
	}
	out := &ServerTLS{CredentialName: in.GetCredentialName(), SubjectAltNames: in.GetSubjectAltNames(), HTTPSRedirect: in.GetHttpsRedirect()}
	if proto == ProtocolHTTP {
		if !out.HTTPSRedirect {
			p.add(field+".tls", "InvalidTLS", "an HTTP server takes only tls.httpsRedirect; use protocol HTTPS to terminate TLS")
		}
		return out
	}
	switch in.GetMode() {
	case networkingapi.ServerTLSSettings_PASSTHROUGH:
		out.Mode = TLSPassthrough
	case networkingapi.ServerTLSSettings_SIMPLE:
		out.Mode = TLSSimple
	case networkingapi.ServerTLSSettings_MUTUAL:
		out.Mode = TLSMutual
	default:
		p.add(field+".tls.mode", "UnsupportedTLSMode", "tls mode %s is not supported (PASSTHROUGH, SIMPLE or MUTUAL)", in.GetMode())
	}
	if out.Mode != TLSPassthrough && out.CredentialName == "" {
		p.add(field+".tls.credentialName", "MissingCredential", "tls mode %s needs credentialName, the Secret with the certificate and key (file certificates are not supported)", out.Mode)
	}
	if out.CredentialName != "" && strings.ContainsAny(out.CredentialName, "/ ") {
		p.add(field+".tls.credentialName", "InvalidCredential", "credentialName %q must be a Secret name of the gateway's namespace", out.CredentialName)
	}
	if in.GetServerCertificate() != "" || in.GetPrivateKey() != "" || in.GetCaCertificates() != "" || len(in.GetCredentialNames()) > 0 || len(in.GetTlsCertificates()) > 0 {
		p.add(field+".tls", ReasonUnsupportedField, "file certificates, credentialNames and tlsCertificates are not supported; credentialName is used")
	}
	return out
}

// Secret data keys Istio reads a credential from.
var (
	certKeys = []string{"tls.crt", "cert"}
	keyKeys  = []string{"tls.key", "key"}
	caKeys   = []string{"ca.crt", "cacert"}
)

// credential keeps a Secret that holds a TLS credential: a certificate and
// key, or a CA. Other Secrets contribute nothing and are not reported.
func credential(key ObjectKey, s *corev1.Secret, p *problems) *record {
	data := maps.Clone(s.Data)
	for k, v := range s.StringData { // as the API server would merge it (files may use stringData)
		if data == nil {
			data = map[string][]byte{}
		}
		data[k] = []byte(v)
	}
	c := &Credential{Namespace: key.Namespace, Name: key.Name,
		Cert: firstData(data, certKeys), Key: firstData(data, keyKeys), CA: firstData(data, caKeys)}
	if c.Cert == nil && c.Key == nil && c.CA == nil {
		return &record{}
	}
	if (c.Cert == nil) != (c.Key == nil) {
		p.add("data", "InvalidCredential", "a TLS credential needs both a certificate (tls.crt or cert) and a key (tls.key or key)")
		return nil
	}
	for _, part := range []struct {
		name, want string
		data       []byte
	}{{"certificate", "CERTIFICATE", c.Cert}, {"CA", "CERTIFICATE", c.CA}, {"key", "PRIVATE KEY", c.Key}} {
		if part.data != nil && !isPEM(part.data, part.want) {
			p.add("data", "InvalidCredential", "the %s is not PEM (%s)", part.name, part.want)
			return nil
		}
	}
	return &record{Policies: []*policyRow{{Namespace: key.Namespace, Credential: c}}}
}

func firstData(data map[string][]byte, keys []string) []byte {
	for _, k := range keys {
		if v, ok := data[k]; ok && len(v) > 0 {
			return v
		}
	}
	return nil
}

// isPEM reports whether data holds a PEM block whose type ends in want
// ("PRIVATE KEY" also matches "RSA PRIVATE KEY" and "EC PRIVATE KEY").
func isPEM(data []byte, want string) bool {
	b, _ := pem.Decode(data)
	return b != nil && strings.HasSuffix(b.Type, want)
}
