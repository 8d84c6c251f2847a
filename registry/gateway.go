package registry

import (
	"cmp"
	"slices"
	"time"

	memdb "github.com/hashicorp/go-memdb"
)

// Kinds of the gateway model.
const (
	// KindGateway is Istio's Gateway (networking.istio.io v1, v1beta1, v1alpha3).
	KindGateway = "Gateway"
	// KindSecret is a Kubernetes Secret; the registry keeps those holding a
	// TLS credential (see Credential) and ignores the rest.
	KindSecret = "Secret"
)

// ServerTLSMode is a Gateway server's tls.mode.
type ServerTLSMode int

// Server TLS modes the control plane serves. A server without tls is
// plaintext (its ServerTLS is nil).
const (
	TLSPassthrough ServerTLSMode = iota // route by SNI, never terminate
	TLSSimple                           // terminate with the credential
	TLSMutual                           // terminate and require a client certificate
)

func (m ServerTLSMode) String() string {
	switch m {
	case TLSSimple:
		return "SIMPLE"
	case TLSMutual:
		return "MUTUAL"
	}
	return "PASSTHROUGH"
}

// ServerTLS is a Gateway server's TLS settings.
type ServerTLS struct {
	Mode ServerTLSMode
	// CredentialName names the Secret holding the certificate and key (and,
	// for MUTUAL, the CA as `ca.crt` or a Secret NAME-cacert); set for
	// SIMPLE and MUTUAL.
	CredentialName  string
	SubjectAltNames []string // MUTUAL: accepted client certificate SANs
	HTTPSRedirect   bool     // plaintext HTTP servers: answer with a redirect to https
}

// GatewayServer is one server of a Gateway: a port, its hosts and TLS.
type GatewayServer struct {
	Field    string // "spec.servers[0]"
	Name     string // the server's name; "" when unnamed
	Port     uint32
	PortName string
	Protocol Protocol
	// Hosts are `namespace/dnsName` ("*" for any namespace, "." for the
	// Gateway's): the VirtualServices of that namespace may bind them.
	Hosts []EgressHost
	TLS   *ServerTLS // nil: plaintext
}

// Gateway configures the router proxies (ingress or egress gateways) its
// selector picks, in any namespace (Istio's default,
// PILOT_SCOPE_GATEWAY_TO_NAMESPACE=false).
type Gateway struct {
	Namespace string
	Name      string
	// Selector picks router proxies by label; empty picks every one.
	Selector map[string]string
	Servers  []GatewayServer
	// Created is the object's creationTimestamp (zero when unknown).
	Created time.Time
}

// Ref is the name VirtualServices bind the Gateway by: "namespace/name".
func (g *Gateway) Ref() string { return g.Namespace + "/" + g.Name }

// Selects reports whether the Gateway configures a proxy with labels.
func (g *Gateway) Selects(labels map[string]string) bool {
	for k, v := range g.Selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// BindsHost reports whether a VirtualService of namespace vsNS may bind
// host to the server: one of the server's hosts matches the namespace and
// covers the host (or is covered by it, for a wildcard VirtualService host).
func (s *GatewayServer) BindsHost(gwNS, vsNS, host string) bool {
	for _, h := range s.Hosts {
		if !h.MatchNamespace(vsNS, gwNS) {
			continue
		}
		if h.MatchHost(host) || HostMatches(host, h.Host) {
			return true
		}
	}
	return false
}

// BoundTo reports whether a VirtualService applies to the Gateway.
func (vs *VirtualService) BoundTo(g *Gateway) bool {
	return slices.Contains(vs.Gateways, g.Ref())
}

// Credential is the TLS material of one Secret: `tls.crt`/`tls.key` (or
// `cert`/`key`) and the CA (`ca.crt` or `cacert`), PEM. Key never appears
// in a problem, log or debug view.
type Credential struct {
	Namespace string
	Name      string
	Cert      []byte
	Key       []byte
	CA        []byte
}

// Gateways returns every Gateway, by namespace/name.
func (v *view) Gateways() []*Gateway { return v.gateways }

// Credential returns the TLS credential of Secret namespace/name, or nil.
func (v *view) Credential(namespace, name string) *Credential {
	return v.credentials[namespace+"/"+name]
}

// collectGateways reads the Gateways and credentials of the policies table.
func collectGateways(txn *memdb.Txn) ([]*Gateway, map[string]*Credential) {
	var gws []*Gateway
	creds := map[string]*Credential{}
	it, err := txn.Get(tablePolicies, indexID)
	must(err)
	for obj := it.Next(); obj != nil; obj = it.Next() {
		r := obj.(*policyRow)
		if r.Gateway != nil {
			gws = append(gws, r.Gateway)
		}
		if c := r.Credential; c != nil {
			if k := c.Namespace + "/" + c.Name; creds[k] == nil { // the first origin by ID wins
				creds[k] = c
			}
		}
	}
	slices.SortStableFunc(gws, func(a, b *Gateway) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return gws, creds
}
