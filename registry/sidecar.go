package registry

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	"k8s.io/apimachinery/pkg/util/validation"
)

// KindSidecar is Istio's Sidecar (networking.istio.io v1, v1beta1, v1alpha3).
const KindSidecar = "Sidecar"

// ReasonSidecarConflict: two Sidecars without a workloadSelector in one
// namespace; the older (or the first by name) is the namespace's default.
const ReasonSidecarConflict = "SidecarConflict"

// OutboundPolicy is a Sidecar's outboundTrafficPolicy mode.
type OutboundPolicy int

// Outbound traffic policies. Unset follows the mesh (ALLOW_ANY).
const (
	OutboundUnset OutboundPolicy = iota
	OutboundAllowAny
	OutboundRegistryOnly
)

func (o OutboundPolicy) String() string {
	switch o {
	case OutboundAllowAny:
		return "ALLOW_ANY"
	case OutboundRegistryOnly:
		return "REGISTRY_ONLY"
	}
	return "UNSET"
}

// EgressHost is one `namespace/dnsName` of a Sidecar egress listener.
type EgressHost struct {
	// Namespace is a namespace name, "*" (any), "." (the proxy's own) or
	// "~" (none).
	Namespace string
	// Host is "*", a wildcard "*.suffix" or a host name, lower case.
	Host string
}

func (h EgressHost) String() string { return h.Namespace + "/" + h.Host }

// Egress is one Sidecar egress listener: the hosts a proxy sees, on one
// port or (Port 0) on every port.
type Egress struct {
	Port  uint32
	Hosts []EgressHost
}

// Sidecar scopes what the proxies it selects receive.
type Sidecar struct {
	Namespace string
	Name      string
	// Selector picks workloads of Namespace by label; nil: every workload
	// of the namespace (every namespace without its own, in the root namespace).
	Selector map[string]string
	// Egress lists the listeners; empty means the proxies see every
	// service (only OutboundPolicy applies).
	Egress         []Egress
	OutboundPolicy OutboundPolicy
	// Created is the object's creationTimestamp (zero when unknown).
	Created time.Time
}

// sidecarSet is the view's Sidecars: selector-less losers left out, the
// rest by namespace, oldest first, then by name; problems name the losers.
type sidecarSet struct {
	list     []*Sidecar
	problems []Problem
}

func (v *view) Sidecars() []*Sidecar { return v.sidecars.list }

func compareSidecars(a, b *Sidecar) int {
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), compareCreated(a.Created, b.Created), cmp.Compare(a.Name, b.Name))
}

// collectSidecars reads every Sidecar of the policies table. Of two
// selector-less Sidecars in one namespace the older (then the first by
// name) stays; each other one gets a problem naming the one that won.
func collectSidecars(txn *memdb.Txn) sidecarSet {
	var rows []*policyRow
	it, err := txn.Get(tablePolicies, indexID)
	must(err)
	for obj := it.Next(); obj != nil; obj = it.Next() {
		if r := obj.(*policyRow); r.Sidecar != nil {
			rows = append(rows, r)
		}
	}
	slices.SortStableFunc(rows, func(a, b *policyRow) int {
		return cmp.Or(compareSidecars(a.Sidecar, b.Sidecar), cmp.Compare(a.Origin, b.Origin))
	})
	var out sidecarSet
	winners := map[string]*policyRow{} // selector-less, by namespace
	for _, r := range rows {
		if r.Sidecar.Selector != nil {
			out.list = append(out.list, r.Sidecar)
			continue
		}
		if w := winners[r.Namespace]; w != nil {
			out.problems = append(out.problems, sidecarConflict(txn, w, r))
			continue
		}
		winners[r.Namespace] = r
		out.list = append(out.list, r.Sidecar)
	}
	sortProblems(out.problems)
	return out
}

func sidecarConflict(txn *memdb.Txn, winner, loser *policyRow) Problem {
	return Problem{Source: objectSource(txn, loser.Object, loser.Origin), Object: objectName(txn, loser.Object),
		Field: "spec.workloadSelector", Reason: ReasonSidecarConflict,
		Message: fmt.Sprintf("namespace %s already has a Sidecar without workloadSelector, %s, which wins (%s); this one is ignored",
			loser.Namespace, objectName(txn, winner.Object), winReason(winner.Sidecar.Created, loser.Sidecar.Created))}
}

// ParseEgressHost reads a Sidecar egress host, `namespace/dnsName`.
func ParseEgressHost(s string) (EgressHost, error) {
	ns, host, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return EgressHost{}, fmt.Errorf("%q is not of the form namespace/dnsName", s)
	}
	if ns != "*" && ns != "." && ns != "~" && len(validation.IsDNS1123Label(ns)) > 0 {
		return EgressHost{}, fmt.Errorf("%q: namespace %q is not a namespace name, \"*\", \".\" or \"~\"", s, ns)
	}
	host = strings.ToLower(host)
	if err := checkEgressDNSName(host); err != nil {
		return EgressHost{}, fmt.Errorf("%q: %w", s, err)
	}
	return EgressHost{Namespace: ns, Host: host}, nil
}

// checkEgressDNSName accepts "*", "*.suffix" and host names.
func checkEgressDNSName(host string) error {
	if host == "*" {
		return nil
	}
	rest := strings.TrimPrefix(host, "*.")
	if host == "" || rest == "" {
		return fmt.Errorf("dnsName is empty")
	}
	for _, label := range strings.Split(rest, ".") {
		if label == "" || len(label) > 63 || strings.Trim(label, "abcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			return fmt.Errorf("dnsName %q is not a host name (a wildcard may only be the left-most label)", host)
		}
	}
	return nil
}

// MatchHost reports whether h matches a host name (not its namespace).
func (h EgressHost) MatchHost(host string) bool {
	switch {
	case h.Host == "*":
		return true
	case strings.HasPrefix(h.Host, "*."):
		return strings.HasSuffix(host, h.Host[1:])
	}
	return h.Host == host
}

// MatchNamespace reports whether h matches a service of namespace svcNS,
// for a proxy of namespace proxyNS ("." is the proxy's namespace).
func (h EgressHost) MatchNamespace(svcNS, proxyNS string) bool {
	switch h.Namespace {
	case "*":
		return true
	case "~":
		return false
	case ".":
		return svcNS == proxyNS
	}
	return svcNS == h.Namespace
}
