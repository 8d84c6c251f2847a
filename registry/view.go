package registry

import (
	memdb "github.com/hashicorp/go-memdb"
)

// view is one immutable revision of the model: a memdb read transaction and
// the merged data computed from it when it was committed.
type view struct {
	txn        *memdb.Txn
	revision   uint64
	services   []*Service
	byHost     map[string]*Service
	endpoints  map[string][]*Endpoint
	byIP       map[string]*Workload
	svcsByAddr map[string][]*Service
	peerAuths  []*PeerAuthentication
	destRules  []*DestinationRule
	sidecars   sidecarSet
	authz      []*AuthorizationPolicy
	// virtualServices and their problems against the model (see
	// view_virtualservice.go).
	virtualServices []*VirtualService
	vsProblems      []Problem
	// gateways and credentials (by "namespace/name"), see gateway.go.
	gateways    []*Gateway
	credentials map[string]*Credential
	// groups are the WorkloadGroups, by namespace/name (see workloadgroup.go).
	groups []*WorkloadGroup
	// drProblems are DestinationRules' problems against the model (see
	// view_destrule.go).
	drProblems []Problem
	// conflicts are the problems of merging, by host (ServiceEntries that
	// lost a host to another).
	conflicts map[string][]Problem
	// addrConflicts are the problems of workloads of another namespace
	// that lost an address, by address.
	addrConflicts map[string][]Problem
}

var _ View = (*view)(nil)

func (v *view) Revision() uint64                           { return v.revision }
func (v *view) Services() []*Service                       { return v.services }
func (v *view) Service(hostname string) *Service           { return v.byHost[hostname] }
func (v *view) Endpoints(hostname string) []*Endpoint      { return v.endpoints[hostname] }
func (v *view) WorkloadByIP(ip string) *Workload           { return v.byIP[ip] }
func (v *view) PeerAuthentications() []*PeerAuthentication { return v.peerAuths }
func (v *view) DestinationRules() []*DestinationRule       { return v.destRules }

// AuthorizationPolicies returns every AuthorizationPolicy, sorted by namespace and name.
func (v *view) AuthorizationPolicies() []*AuthorizationPolicy { return v.authz }

// ServicesForWorkload returns the services that list the workload's
// address among their endpoints of the workload's namespace, sorted by
// hostname.
func (v *view) ServicesForWorkload(w *Workload) []*Service {
	if w == nil {
		return nil
	}
	return v.svcsByAddr[addrKey(w.Address, w.Namespace)]
}

// mergeProblems returns the problems of merging, unsorted.
func (v *view) mergeProblems() []Problem {
	var out []Problem
	for _, ps := range v.conflicts {
		out = append(out, ps...)
	}
	for _, ps := range v.addrConflicts {
		out = append(out, ps...)
	}
	out = append(out, v.sidecars.problems...)
	out = append(out, v.vsProblems...)
	out = append(out, v.drProblems...)
	return out
}
