package snapshot

import (
	"cmp"
	"slices"
	"strings"

	"github.com/librarymesh/controlplane/meshname"
	"github.com/librarymesh/controlplane/registry"
)

// InboundMTLSMode resolves the PeerAuthentication mode for a workload's port:
// a policy selecting the workload, then the namespace's, then the mesh-wide
// one in the root namespace; at each level a port-level mode wins over the
// policy's mode, and UNSET defers to the next level. Nothing set is PERMISSIVE.
func InboundMTLSMode(pas []*registry.PeerAuthentication, rootNS, ns string, labels map[string]string, port uint32) registry.MTLSMode {
	for _, pa := range peerAuthChain(pas, rootNS, ns, labels) {
		if m := pa.PortModes[port]; m != registry.MTLSUnset {
			return m
		}
		if pa.Mode != registry.MTLSUnset {
			return pa.Mode
		}
	}
	return DefaultMTLSMode
}

// peerAuthChain returns the policies that apply to a workload, most specific first.
func peerAuthChain(pas []*registry.PeerAuthentication, rootNS, ns string, labels map[string]string) []*registry.PeerAuthentication {
	var workload, namespace, mesh *registry.PeerAuthentication
	for _, pa := range pas { // sorted by namespace/name: the first match wins
		switch {
		case pa.Namespace == ns && pa.Selector != nil && selects(pa.Selector, labels):
			workload = firstOf(workload, pa)
		case pa.Namespace == ns && pa.Selector == nil:
			namespace = firstOf(namespace, pa)
		}
		if pa.Namespace == rootNS && pa.Selector == nil {
			mesh = firstOf(mesh, pa)
		}
	}
	var out []*registry.PeerAuthentication
	for _, pa := range []*registry.PeerAuthentication{workload, namespace, mesh} {
		if pa != nil && !slices.Contains(out, pa) {
			out = append(out, pa)
		}
	}
	return out
}

func firstOf[T any](cur, next *T) *T {
	if cur != nil {
		return cur
	}
	return next
}

func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// DestinationRuleFor picks the rule a proxy in namespace proxyNS applies to
// host: rules visible to it, those in its own namespace first, then the
// service's namespace, then the root namespace, then any other; within that,
// the most specific host (exact, then the longest wildcard). Other visible
// rules of the same namespace for the same host are merged into it, as
// Istio does: their subsets are added (a name already defined keeps the
// first definition) and the first traffic policy set wins; rules are taken
// in namespace/name order.
func DestinationRuleFor(drs []*registry.DestinationRule, rootNS, proxyNS string, svc *registry.Service) *registry.DestinationRule {
	var best *registry.DestinationRule
	bestRank := [2]int{}
	for _, dr := range drs {
		if !exportedTo(dr, proxyNS) {
			continue
		}
		spec, ok := hostMatch(dr.Host, svc.Hostname)
		if !ok {
			continue
		}
		rank := [2]int{nsRank(dr.Namespace, proxyNS, svc.Namespace, rootNS), -spec}
		if best == nil || rank[0] < bestRank[0] || (rank[0] == bestRank[0] && rank[1] < bestRank[1]) {
			best, bestRank = dr, rank
		}
	}
	return mergeSameHost(best, drs, proxyNS)
}

// mergeSameHost merges into first the later rules of its namespace for
// the same host that proxies in proxyNS see; first itself when there are none.
func mergeSameHost(first *registry.DestinationRule, drs []*registry.DestinationRule, proxyNS string) *registry.DestinationRule {
	if first == nil {
		return nil
	}
	merged := first
	for _, dr := range drs {
		if dr == first || dr.Namespace != first.Namespace || dr.Host != first.Host || !exportedTo(dr, proxyNS) ||
			cmp.Compare(dr.Name, first.Name) < 0 {
			continue
		}
		if merged == first {
			cp := *first
			cp.Subsets = slices.Clone(first.Subsets)
			merged = &cp
		}
		if merged.TrafficPolicy == nil {
			merged.TrafficPolicy = dr.TrafficPolicy
		}
		for _, s := range dr.Subsets {
			if !slices.ContainsFunc(merged.Subsets, func(m registry.Subset) bool { return m.Name == s.Name }) {
				merged.Subsets = append(merged.Subsets, s)
			}
		}
	}
	return merged
}

func nsRank(ns, proxyNS, svcNS, rootNS string) int {
	switch ns {
	case proxyNS:
		return 0
	case svcNS:
		return 1
	case rootNS:
		return 2
	}
	return 3
}

func exportedTo(dr *registry.DestinationRule, ns string) bool {
	if len(dr.ExportTo) == 0 {
		return true
	}
	for _, e := range dr.ExportTo {
		if e == "*" || e == ns || (e == "." && dr.Namespace == ns) {
			return true
		}
	}
	return false
}

// hostMatch reports whether pattern (a host or `*.suffix` or `*`) matches
// host, and how specific the match is (higher is more specific).
func hostMatch(pattern, host string) (int, bool) {
	switch {
	case pattern == host:
		return 1 << 20, true
	case pattern == "*":
		return 0, true
	case strings.HasPrefix(pattern, "*."):
		return len(pattern), strings.HasSuffix(host, pattern[1:])
	}
	return 0, false
}

// istioMutualSANs are the SPIFFE IDs a proxy accepts from a service over
// Istio mutual TLS: the rule's subjectAltNames, else the service's
// accounts, else its endpoints'.
func (b *Builder) istioMutualSANs(svc *registry.Service, tls *registry.ClientTLS) []string {
	if tls != nil && len(tls.SubjectAltNames) > 0 {
		return tls.SubjectAltNames
	}
	if len(svc.ServiceAccounts) > 0 {
		return svc.ServiceAccounts
	}
	return b.endpointIdentities(svc)
}

// endpointIdentities are the SPIFFE IDs of a service's endpoints, for a
// service whose model lists none.
func (b *Builder) endpointIdentities(svc *registry.Service) []string {
	var ids []string
	for _, ep := range b.view.Endpoints(svc.Hostname) {
		if ep.ServiceAccount == "" {
			continue
		}
		ns := cmp.Or(ep.Namespace, svc.Namespace)
		if id := meshname.SPIFFEID(b.opts.TrustDomain, ns, ep.ServiceAccount); !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}
