package registry

import (
	"fmt"
	"maps"
	"slices"

	memdb "github.com/hashicorp/go-memdb"
)

// Problem reasons of DestinationRules found against the rest of the model.
const (
	// ReasonSubsetMatchesNothing: no endpoint of the rule's host carries
	// all of a subset's labels, so its cluster has no endpoints.
	ReasonSubsetMatchesNothing = "SubsetMatchesNoEndpoint"
	// ReasonPortNotOnService: a portLevelSettings port is not a port of
	// the rule's host, so the settings apply to nothing.
	ReasonPortNotOnService = "PortNotOnService"
)

// updateDestRuleProblems carries the DestinationRule problems over from
// old, or checks the rules again when policy changed or a touched host is
// the host of a rule (its endpoints or ports may have changed).
func (v *view) updateDestRuleProblems(old *view, txn *memdb.Txn, a affectedSet) {
	v.drProblems = old.drProblems
	if a.policy || slices.ContainsFunc(v.destRules, func(dr *DestinationRule) bool { return a.hosts[dr.Host] }) {
		v.drProblems = destRuleProblems(v, txn)
	}
}

// destRuleProblems checks every rule for an exact host that has a service:
// each subset must select an endpoint, and each port-level setting must
// name a port of the service. A rule for a wildcard or an unknown host is
// not checked (Istio allows both).
func destRuleProblems(v *view, txn *memdb.Txn) []Problem {
	var out []Problem
	it, err := txn.Get(tablePolicies, indexID)
	must(err)
	for obj := it.Next(); obj != nil; obj = it.Next() {
		r := obj.(*policyRow)
		if r.DestRule == nil || v.byHost[r.DestRule.Host] == nil {
			continue
		}
		ps := destRuleModelProblems(v.byHost[r.DestRule.Host], v.endpoints[r.DestRule.Host], r.DestRule)
		src, name := objectSource(txn, r.Object, r.Origin), objectName(txn, r.Object)
		for _, p := range ps {
			p.Source, p.Object = src, name
			out = append(out, p)
		}
	}
	return out
}

// destRuleModelProblems checks one rule against its host's service and endpoints.
func destRuleModelProblems(svc *Service, eps []*Endpoint, dr *DestinationRule) []Problem {
	var out []Problem
	for i, s := range dr.Subsets {
		if !slices.ContainsFunc(eps, func(ep *Endpoint) bool { return labelsMatch(s.Labels, ep.Labels) }) {
			out = append(out, Problem{Field: fmt.Sprintf("spec.subsets[%d].labels", i), Reason: ReasonSubsetMatchesNothing,
				Message: fmt.Sprintf("subset %q selects no endpoint of %s (labels %v); its cluster has no endpoints", s.Name, svc.Hostname, s.Labels)})
		}
		if s.TrafficPolicy != nil {
			out = append(out, portLevelProblems(svc, s.TrafficPolicy, fmt.Sprintf("spec.subsets[%d].trafficPolicy.portLevelSettings", i))...)
		}
	}
	if dr.TrafficPolicy != nil {
		out = append(out, portLevelProblems(svc, dr.TrafficPolicy, "spec.trafficPolicy.portLevelSettings")...)
	}
	return out
}

func portLevelProblems(svc *Service, tp *TrafficPolicy, field string) []Problem {
	var out []Problem
	for _, port := range slices.Sorted(maps.Keys(tp.PortLevel)) {
		if _, ok := svc.Port(port); !ok {
			out = append(out, Problem{Field: field, Reason: ReasonPortNotOnService,
				Message: fmt.Sprintf("port %d is not a port of %s; its settings apply to nothing", port, svc.Hostname)})
		}
	}
	return out
}
