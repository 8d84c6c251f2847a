package registry

import (
	"cmp"
	"slices"
	"strings"
	"time"
)

// MeshGateway is the gateway name that stands for every sidecar (and
// proxyless client) of the mesh in a VirtualService's gateways.
const MeshGateway = "mesh"

// VirtualService is Istio's routing for a set of hosts. Host names are
// qualified as Istio does: a name without a dot is NAME.NAMESPACE.svc.DOMAIN.
type VirtualService struct {
	Namespace string
	Name      string
	// Hosts are the hosts the routes apply to, lower case and qualified;
	// a wildcard ("*.example.com", "*") matches by suffix.
	Hosts []string
	// Gateways the routes apply to; empty means MeshGateway only. A
	// VirtualService bound to gateways alone is kept for gateways and does
	// not change sidecars.
	Gateways []string
	// ExportTo as in Service: namespaces, sorted; empty means every one.
	ExportTo []string
	HTTP     []HTTPRoute
	TCP      []L4Route
	TLS      []L4Route
	// Created is the object's creationTimestamp (zero when unknown): of
	// two VirtualServices naming one host, the older wins.
	Created time.Time
	// Lines are where the fields that problems against the model name
	// (hosts, destinations) were read, e.g. "spec.hosts[0]" ->
	// "dir/mesh.yaml:12"; nil when the source has no lines (Kubernetes).
	Lines map[string]string
}

// AppliesToMesh reports whether the routes apply to sidecars and proxyless clients.
func (vs *VirtualService) AppliesToMesh() bool {
	return appliesToMesh(vs.Gateways)
}

func appliesToMesh(gateways []string) bool {
	return len(gateways) == 0 || slices.Contains(gateways, MeshGateway)
}

// ExportedTo reports whether proxies in namespace ns see the VirtualService.
func (vs *VirtualService) ExportedTo(ns string) bool {
	return len(vs.ExportTo) == 0 || slices.Contains(vs.ExportTo, "*") || slices.Contains(vs.ExportTo, ns)
}

// StringMatchKind is how a StringMatch compares.
type StringMatchKind int

// String match kinds.
const (
	MatchExact StringMatchKind = iota
	MatchPrefix
	MatchRegex
)

// StringMatch is Istio's exact, prefix or (RE2) regex match.
type StringMatch struct {
	Kind  StringMatchKind
	Value string
}

// KeyMatch matches a named header or query parameter. Absent (Istio's
// withoutHeaders) inverts it; an empty match (`{}`) asks for presence.
type KeyMatch struct {
	Name    string
	Match   *StringMatch // nil: the key is present
	Without bool
}

// HTTPMatch is one match condition of an HTTP route; all its parts must hold.
type HTTPMatch struct {
	Name          string
	URI           *StringMatch
	Method        *StringMatch
	Authority     *StringMatch
	Headers       []KeyMatch // sorted by name, then Without
	QueryParams   []KeyMatch // sorted by name
	IgnoreURICase bool
	// Port restricts the match to one service port (0: every port).
	Port            uint32
	Gateways        []string // empty: the VirtualService's
	SourceNamespace string   // empty: every namespace
	// Unsupported: the match has a condition the control plane cannot
	// check (sourceLabels, scheme); it is left out (never matches).
	Unsupported bool
}

// Destination is where a route sends a share of its traffic.
type Destination struct {
	Host   string // qualified as the VirtualService's hosts
	Subset string
	Port   uint32 // 0: the service's only port, or the port being routed
	// Weight is the share in percent; 0 for a single destination means all.
	Weight  int32
	Headers HeaderOps
	// Field is where the destination was given, e.g. "spec.http[0].route[1]".
	Field string
}

// HeaderOps edits request and response headers.
type HeaderOps struct {
	RequestSet     map[string]string
	RequestAdd     map[string]string
	RequestRemove  []string
	ResponseSet    map[string]string
	ResponseAdd    map[string]string
	ResponseRemove []string
}

// Retries is an HTTP route's retry policy.
type Retries struct {
	Attempts      int32
	PerTryTimeout time.Duration // 0: unset
	// RetryOn is Envoy's retry_on list without status codes; StatusCodes
	// are the numeric entries of Istio's retryOn.
	RetryOn     []string
	StatusCodes []uint32
}

// FaultDelay delays a percentage of requests.
type FaultDelay struct {
	Delay   time.Duration
	Percent float64
}

// FaultAbort fails a percentage of requests with an HTTP or gRPC status.
type FaultAbort struct {
	HTTPStatus uint32
	GRPCStatus uint32
	IsGRPC     bool
	Percent    float64
}

// Rewrite changes the path (prefix) or authority before forwarding.
type Rewrite struct {
	URI       string
	Authority string
}

// Redirect answers with a redirect instead of forwarding.
type Redirect struct {
	URI       string
	Authority string
	Scheme    string
	Port      uint32
	Code      uint32 // 0: 301
}

// DirectResponse answers with a fixed status and body.
type DirectResponse struct {
	Status uint32
	Body   string
}

// HTTPRoute is one rule of a VirtualService's http section.
type HTTPRoute struct {
	Name    string
	Field   string // "spec.http[2]"
	Matches []HTTPMatch
	Route   []Destination
	// Timeout is the route timeout; nil means unset (no timeout).
	Timeout        *time.Duration
	Retries        *Retries
	Delay          *FaultDelay
	Abort          *FaultAbort
	Rewrite        *Rewrite
	Headers        HeaderOps
	Mirror         *Destination
	MirrorPercent  float64 // of requests mirrored when Mirror is set
	Redirect       *Redirect
	DirectResponse *DirectResponse
}

// L4Match is one match condition of a TCP or TLS route.
type L4Match struct {
	Port            uint32   // 0: every port
	SNIHosts        []string // TLS only
	Gateways        []string // empty: the VirtualService's
	SourceNamespace string
	// Unsupported: a condition the control plane cannot check
	// (sourceLabels, subnets); the match is left out.
	Unsupported bool
}

// L4Route is one rule of a VirtualService's tcp or tls section.
type L4Route struct {
	Field   string
	Matches []L4Match
	Route   []Destination
}

// HostMatches reports whether a VirtualService host (maybe a wildcard)
// covers a service host name.
func HostMatches(pattern, host string) bool {
	if pattern == "*" {
		return true
	}
	if suffix, ok := strings.CutPrefix(pattern, "*"); ok {
		return strings.HasSuffix(host, suffix)
	}
	return pattern == host
}

// VirtualServiceFor returns the VirtualService that routes host for
// proxies in namespace ns, or nil: of those exported to ns and applying to
// the mesh, one naming the host exactly wins over a wildcard, then the
// older, then the first by namespace/name (the others are reported as
// conflicts). vss is sorted as View.VirtualServices is.
func VirtualServiceFor(vss []*VirtualService, ns, host string) *VirtualService {
	var best *VirtualService
	bestExact := false
	for _, vs := range vss {
		if !vs.AppliesToMesh() || !vs.ExportedTo(ns) {
			continue
		}
		exact, ok := vsCovers(vs, host)
		if !ok {
			continue
		}
		if best == nil || (exact && !bestExact) || (exact == bestExact && compareVS(vs, best) < 0) {
			best, bestExact = vs, exact
		}
	}
	return best
}

// vsCovers reports whether vs names host, and whether exactly.
func vsCovers(vs *VirtualService, host string) (exact, ok bool) {
	for _, h := range vs.Hosts {
		if h == host {
			return true, true
		}
		if HostMatches(h, host) {
			ok = true
		}
	}
	return false, ok
}

// compareVS orders VirtualServices as conflicts are decided: the older
// first (a known creation time before an unknown one), then namespace/name.
func compareVS(a, b *VirtualService) int {
	return cmp.Or(compareCreated(a.Created, b.Created), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
}

// FindSubset returns the subset of host named name from the
// DestinationRules (any namespace; the host may be matched by a wildcard
// rule), or false.
func FindSubset(drs []*DestinationRule, host, name string) (Subset, bool) {
	for _, dr := range drs {
		if !HostMatches(dr.Host, host) {
			continue
		}
		for _, s := range dr.Subsets {
			if s.Name == name {
				return s, true
			}
		}
	}
	return Subset{}, false
}
