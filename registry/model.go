// Package registry holds the mesh model: what the sources (Kubernetes
// informers, a YAML directory, register) say about services, endpoints,
// workloads and policies, stored in go-memdb and read through an immutable
// View. It knows nothing of Envoy or xDS.
package registry

import (
	"fmt"
	"slices"
	"strings"
)

// Protocol is an Istio port protocol name (the part of a port name before
// the first dash, or the protocol field of a ServiceEntry port).
type Protocol string

// Istio's protocols that the snapshot distinguishes.
const (
	ProtocolTCP   Protocol = "TCP"
	ProtocolHTTP  Protocol = "HTTP"
	ProtocolHTTP2 Protocol = "HTTP2"
	ProtocolGRPC  Protocol = "GRPC"
	ProtocolHTTPS Protocol = "HTTPS"
	ProtocolTLS   Protocol = "TLS"
)

// IsHTTP reports whether Envoy should run an HTTP connection manager for the protocol.
func (p Protocol) IsHTTP() bool {
	switch p {
	case ProtocolHTTP, ProtocolHTTP2, ProtocolGRPC, "GRPC-WEB":
		return true
	}
	return false
}

// IsHTTP2 reports whether upstream connections must speak HTTP/2.
func (p Protocol) IsHTTP2() bool { return p == ProtocolHTTP2 || p == ProtocolGRPC }

// ParseProtocol normalises a protocol name; unknown names are TCP, as in Istio.
func ParseProtocol(s string) Protocol {
	up := Protocol(strings.ToUpper(s))
	switch up {
	case ProtocolHTTP, ProtocolHTTP2, ProtocolGRPC, ProtocolHTTPS, ProtocolTLS, ProtocolTCP, "GRPC-WEB", "MONGO", "MYSQL", "REDIS", "UDP":
		return up
	}
	return ProtocolTCP
}

// Port is one port of a service.
type Port struct {
	Name     string
	Number   uint32
	Protocol Protocol
	// TargetPort is the port endpoints listen on when they do not name one;
	// 0 means the same as Number.
	TargetPort uint32
}

// ServedOn returns the port a backend (an endpoint or a workload) serves p
// on: its own number for p's name in named (a ServiceEntry endpoint's or
// WorkloadEntry's ports), else TargetPort, else Number.
func (p Port) ServedOn(named map[string]uint32) uint32 {
	if n, ok := named[p.Name]; ok && n != 0 {
		return n
	}
	if p.TargetPort != 0 {
		return p.TargetPort
	}
	return p.Number
}

// Resolution says how a proxy finds the endpoints of a service.
type Resolution int

// Resolutions, following ServiceEntry's.
const (
	ResolutionStatic Resolution = iota // endpoints from the registry (EDS)
	ResolutionDNS                      // endpoints are DNS names (STRICT_DNS)
	ResolutionNone                     // pass through to the original destination
)

func (r Resolution) String() string {
	switch r {
	case ResolutionDNS:
		return "DNS"
	case ResolutionNone:
		return "NONE"
	}
	return "STATIC"
}

// Location says whether a service is part of the mesh (and so gets mesh mTLS).
type Location int

// Locations, following ServiceEntry's.
const (
	MeshInternal Location = iota
	MeshExternal
)

func (l Location) String() string {
	if l == MeshExternal {
		return "MESH_EXTERNAL"
	}
	return "MESH_INTERNAL"
}

// Service is one host name in the mesh. A Kubernetes Service and a
// ServiceEntry that name the same host are merged into one Service.
type Service struct {
	Hostname  string // FQDN, e.g. postgres-1-vm.default.svc.cluster.local
	Namespace string
	Name      string
	// Addresses are the virtual IPs (cluster IP, ServiceEntry addresses). Empty
	// means the service has none and listeners bind 0.0.0.0.
	Addresses  []string
	Ports      []Port // sorted by Number
	Resolution Resolution
	Location   Location
	// ServiceAccounts are the SPIFFE identities allowed to serve the host
	// (ServiceEntry subjectAltNames plus the endpoints' service accounts),
	// as full meshname.SPIFFEID URIs, sorted.
	ServiceAccounts []string
	// Sources names the objects the service was built from, e.g.
	// "ServiceEntry default/postgres-1-vm".
	Sources []string
	// ExportTo lists the namespaces whose proxies see the service, sorted;
	// "*" is every namespace and empty means every namespace (the default).
	// A service merged from several objects is seen where all of them are
	// exported. "~" alone: no namespace.
	ExportTo []string
}

// ExportedTo reports whether proxies in namespace ns see the service.
func (s *Service) ExportedTo(ns string) bool {
	return len(s.ExportTo) == 0 || slices.Contains(s.ExportTo, "*") || slices.Contains(s.ExportTo, ns)
}

// Port returns the service port with the given number.
func (s *Service) Port(number uint32) (Port, bool) {
	for _, p := range s.Ports {
		if p.Number == number {
			return p, true
		}
	}
	return Port{}, false
}

// Endpoint is one instance of a service.
type Endpoint struct {
	Hostname  string // the service it belongs to
	Namespace string
	Address   string // IP, or a DNS name for DNS resolution
	// Ports maps a service port name to the port the endpoint listens on.
	Ports          map[string]uint32
	Labels         map[string]string
	ServiceAccount string // Kubernetes service account name
	Locality       string // region/zone/subzone
	Network        string
	Weight         uint32 // 0 means unset (1)
	Ready          bool
	// Unhealthy: the workload's health checks fail (a WorkloadEntry with
	// health checks enabled whose Healthy condition is not True). Proxies
	// get it as UNHEALTHY, so they send it nothing until it passes again.
	Unhealthy bool
	// Workload names what the endpoint came from, e.g.
	// "WorkloadEntry default/postgres-1-vm" or "Pod default/inventory-abc".
	Workload string
	// TLSMode is meshname.TLSModeIstio when the endpoint's workload has a
	// sidecar (automatic mTLS reaches it with Istio mTLS), else "".
	TLSMode string
}

// PortFor returns the port the endpoint serves service port p on.
func (e *Endpoint) PortFor(p Port) uint32 { return p.ServedOn(e.Ports) }

// Workload is something that runs a proxy: a Pod or a VM (a WorkloadEntry,
// or a ServiceEntry endpoint).
type Workload struct {
	Kind           string // "Pod", "WorkloadEntry" or "ServiceEntry"
	Namespace      string
	Name           string
	Address        string
	Labels         map[string]string
	ServiceAccount string
	Locality       string
	Network        string
	Ports          map[string]uint32
	// TLSMode is meshname.TLSModeIstio when the workload has a sidecar: the
	// label security.istio.io/tlsMode is "istio", or (a pod without the
	// label) Istio's injector annotated it; else "".
	TLSMode string
	// Unhealthy: see Endpoint.Unhealthy.
	Unhealthy bool
}

// MTLSMode is a PeerAuthentication mode.
type MTLSMode int

// Modes. Unset means inherit from the wider policy.
const (
	MTLSUnset MTLSMode = iota
	MTLSDisable
	MTLSPermissive
	MTLSStrict
)

func (m MTLSMode) String() string {
	switch m {
	case MTLSDisable:
		return "DISABLE"
	case MTLSPermissive:
		return "PERMISSIVE"
	case MTLSStrict:
		return "STRICT"
	}
	return "UNSET"
}

// PeerAuthentication is an inbound mTLS policy.
type PeerAuthentication struct {
	Namespace string
	Name      string
	// Selector picks workloads by label; nil applies to the whole namespace
	// (the whole mesh in the root namespace).
	Selector  map[string]string
	Mode      MTLSMode
	PortModes map[uint32]MTLSMode
}

// ClientTLSMode is a DestinationRule trafficPolicy.tls mode.
type ClientTLSMode int

// Client TLS modes. Unset means the rule says nothing about TLS.
const (
	ClientTLSUnset ClientTLSMode = iota
	ClientTLSDisable
	ClientTLSSimple
	ClientTLSMutual
	ClientTLSIstioMutual
)

func (m ClientTLSMode) String() string {
	switch m {
	case ClientTLSDisable:
		return "DISABLE"
	case ClientTLSSimple:
		return "SIMPLE"
	case ClientTLSMutual:
		return "MUTUAL"
	case ClientTLSIstioMutual:
		return "ISTIO_MUTUAL"
	}
	return "UNSET"
}

// Problem is a piece of input that could not be used. The rest of the input
// stays in force, and so does the last good version of the object.
type Problem struct {
	Source  string // "path/file.yaml:12" or "ns/name"
	Object  string // "ServiceEntry default/postgres-1-vm"
	Field   string // "spec.ports[0].number"
	Reason  string // short CamelCase reason, e.g. "InvalidPort"
	Message string
}

func (p Problem) Error() string {
	var b strings.Builder
	if p.Source != "" {
		b.WriteString(p.Source)
		b.WriteString(": ")
	}
	if p.Object != "" {
		b.WriteString(p.Object)
		b.WriteString(": ")
	}
	if p.Field != "" {
		fmt.Fprintf(&b, "%s: ", p.Field)
	}
	b.WriteString(p.Message)
	return b.String()
}

// View is an immutable, consistent read of the model at one revision. Lists
// are sorted (services by hostname, endpoints by address) and must not be
// modified by the caller.
type View interface {
	// Revision increases with every change to the model.
	Revision() uint64
	// Services returns every service, merged by hostname.
	Services() []*Service
	// Service returns the service with the hostname, or nil.
	Service(hostname string) *Service
	// Endpoints returns the endpoints of a service.
	Endpoints(hostname string) []*Endpoint
	// WorkloadByIP returns the workload (pod or VM) with the address, or nil.
	WorkloadByIP(ip string) *Workload
	// ServicesForWorkload returns the services whose endpoints include the workload.
	ServicesForWorkload(w *Workload) []*Service
	// PeerAuthentications returns every PeerAuthentication.
	PeerAuthentications() []*PeerAuthentication
	// DestinationRules returns every DestinationRule.
	DestinationRules() []*DestinationRule
	// Sidecars returns the Sidecars in force, by namespace, oldest first
	// (of two without a workloadSelector in a namespace only the first).
	Sidecars() []*Sidecar
	// AuthorizationPolicies returns every AuthorizationPolicy.
	AuthorizationPolicies() []*AuthorizationPolicy
	// VirtualServices returns every VirtualService, oldest first, then by
	// namespace/name (the order that decides conflicts).
	VirtualServices() []*VirtualService
	// Gateways returns every Gateway, by namespace/name.
	Gateways() []*Gateway
	// Credential returns the TLS credential of Secret namespace/name, or nil.
	Credential(namespace, name string) *Credential
	// WorkloadGroups returns every WorkloadGroup, by namespace/name.
	WorkloadGroups() []*WorkloadGroup
	// WorkloadGroup returns the WorkloadGroup namespace/name, or nil.
	WorkloadGroup(namespace, name string) *WorkloadGroup
}
