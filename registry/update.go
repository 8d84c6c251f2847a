package registry

import (
	"cmp"
	"maps"
	"slices"

	memdb "github.com/hashicorp/go-memdb"
)

// affectedSet is what a write touched: hosts to re-merge, workload
// addresses to re-resolve, and whether policies changed.
type affectedSet struct {
	hosts  map[string]bool
	addrs  map[string]bool
	policy bool
}

// affectedBy maps the rows a transaction changed to what they touch. A
// workload change touches its addresses, the hosts whose endpoints are at
// those addresses or name the Pod, and the hosts of ServiceEntries with a
// workloadSelector in its namespace. An object's own row touches its hosts
// (where it was read shows in host conflicts).
func affectedBy(txn *memdb.Txn, changes memdb.Changes) affectedSet {
	a := affectedSet{hosts: map[string]bool{}, addrs: map[string]bool{}}
	for _, c := range changes {
		for _, obj := range []any{c.Before, c.After} {
			switch r := obj.(type) {
			case *serviceRow:
				a.hosts[r.Hostname] = true
			case *endpointRow:
				a.hosts[r.Hostname] = true
			case *policyRow:
				a.policy = true
			case *workloadRow:
				a.addWorkload(txn, r)
			case *objectRow:
				a.addObject(r)
			}
		}
	}
	return a
}

// addObject touches an object's hosts: when it moved within its file, a
// host conflict names its new line.
func (a *affectedSet) addObject(r *objectRow) {
	if r.Rec == nil {
		return
	}
	for _, sr := range r.Rec.Services {
		a.hosts[sr.Hostname] = true
	}
}

func (a *affectedSet) addWorkload(txn *memdb.Txn, r *workloadRow) {
	for _, addr := range r.Addresses {
		a.addrs[addr] = true
		a.hostsOf(txn, tableEndpoints, indexAddress, addr)
	}
	if r.PodRef != "" {
		a.hostsOf(txn, tableEndpoints, indexPod, r.PodRef)
	}
	if r.Workload.Kind != KindPod && r.Workload.Kind != KindWorkloadEntry {
		return
	}
	it, err := txn.Get(tableServices, indexSelector, r.Namespace)
	must(err)
	for obj := it.Next(); obj != nil; obj = it.Next() {
		a.hosts[obj.(*serviceRow).Hostname] = true
	}
}

func (a *affectedSet) hostsOf(txn *memdb.Txn, table, index, value string) {
	it, err := txn.Get(table, index, value)
	must(err)
	for obj := it.Next(); obj != nil; obj = it.Next() {
		a.hosts[obj.(*endpointRow).Hostname] = true
	}
}

// updateView derives the next view from old by recomputing only what the
// transaction touched. txn reads the committed state.
func updateView(old *view, txn *memdb.Txn, a affectedSet, trustDomain string) *view {
	next := &view{
		txn: txn, revision: old.revision,
		services: old.services, byHost: old.byHost, endpoints: old.endpoints,
		byIP: old.byIP, svcsByAddr: old.svcsByAddr,
		peerAuths: old.peerAuths, destRules: old.destRules, conflicts: old.conflicts, addrConflicts: old.addrConflicts,
		sidecars: old.sidecars, authz: old.authz, gateways: old.gateways, credentials: old.credentials,
		groups: old.groups,
	}
	// Maps are shared with the old view unless this write touches them.
	if len(a.addrs) > 0 {
		next.byIP, next.addrConflicts = maps.Clone(old.byIP), maps.Clone(old.addrConflicts)
	}
	if len(a.hosts) > 0 {
		next.byHost, next.endpoints, next.svcsByAddr = maps.Clone(old.byHost), maps.Clone(old.endpoints), maps.Clone(old.svcsByAddr)
		next.conflicts = maps.Clone(old.conflicts)
	}
	for addr := range a.addrs {
		next.setAddress(txn, addr)
	}
	wl := &workloadIndex{txn: txn, byIP: next.byIP}
	for h := range a.hosts {
		next.unindexAddresses(h)
	}
	for h := range a.hosts {
		next.setHost(h, wl, trustDomain)
	}
	for h := range a.hosts {
		next.indexAddresses(h)
	}
	next.updateServiceList(old, a.hosts)
	if a.policy {
		next.peerAuths, next.destRules = collectPolicies(txn)
		next.sidecars = collectSidecars(txn)
		next.gateways, next.credentials = collectGateways(txn)
		next.groups = collectWorkloadGroups(txn)
		next.authz = collectAuthz(txn)
	}
	next.updateVirtualServices(old, txn, a)
	next.updateDestRuleProblems(old, txn, a)
	return next
}

// updateServiceList patches the sorted service list for the re-merged
// hosts; it sorts again only when hosts came or went.
func (v *view) updateServiceList(old *view, hosts map[string]bool) {
	for h := range hosts {
		if (old.byHost[h] == nil) != (v.byHost[h] == nil) {
			v.sortServices()
			return
		}
	}
	cloned := false
	for h := range hosts {
		svc := v.byHost[h]
		if svc == nil {
			continue
		}
		i, found := slices.BinarySearchFunc(v.services, h, func(s *Service, h string) int { return cmp.Compare(s.Hostname, h) })
		if !found {
			v.sortServices() // cannot happen: the host was there before
			return
		}
		if !cloned {
			v.services, cloned = slices.Clone(v.services), true
		}
		v.services[i] = svc
	}
}
