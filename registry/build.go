package registry

import (
	"cmp"
	"fmt"
	"slices"

	memdb "github.com/hashicorp/go-memdb"
)

// workloadIndex answers the workload questions of merging from one read
// transaction and the view's address map.
type workloadIndex struct {
	txn  *memdb.Txn
	byIP map[string]*Workload
}

// selectable returns the Pods and WorkloadEntries of a namespace, which a
// ServiceEntry workloadSelector may pick.
func (w *workloadIndex) selectable(namespace string) []*workloadRow {
	var out []*workloadRow
	it, err := w.txn.Get(tableWorkloads, indexNamespace, namespace)
	must(err)
	for obj := it.Next(); obj != nil; obj = it.Next() {
		if r := obj.(*workloadRow); r.Workload.Kind == KindPod || r.Workload.Kind == KindWorkloadEntry {
			out = append(out, r)
		}
	}
	return out
}

// pod returns the Pod "ns/name", or nil.
func (w *workloadIndex) pod(ref string) *Workload {
	obj, err := w.txn.First(tableWorkloads, indexPod, ref)
	must(err)
	if obj == nil {
		return nil
	}
	return obj.(*workloadRow).Workload
}

func kindRank(kind string) int {
	switch kind {
	case KindPod:
		return 0
	case KindWorkloadEntry:
		return 1
	}
	return 2
}

// workloadAt picks the workload for an address: Pods win over
// WorkloadEntries over ServiceEntry endpoints, then the oldest (a known
// creation time before an unknown one), then by namespace, name, ID. A
// workload of another namespace that lost the address to the winner gets
// a problem naming both: it does not become that workload.
func workloadAt(txn *memdb.Txn, addr string) (*Workload, []Problem) {
	it, err := txn.Get(tableWorkloads, indexAddress, addr)
	must(err)
	var rows []*workloadRow
	for obj := it.Next(); obj != nil; obj = it.Next() {
		rows = append(rows, obj.(*workloadRow))
	}
	if len(rows) == 0 {
		return nil, nil
	}
	best := slices.MinFunc(rows, compareWorkloadRows)
	var ps []Problem
	for _, r := range rows {
		if r.Namespace == best.Namespace || kindRank(r.Workload.Kind) != kindRank(best.Workload.Kind) {
			continue
		}
		ps = append(ps, Problem{Source: objectSource(txn, r.Object, r.Origin), Object: objectName(txn, r.Object),
			Field: r.Field, Reason: ReasonAddressConflict,
			Message: fmt.Sprintf("address %s is also the address of %s %s/%s (%s), which wins (%s); this object's workload there is ignored",
				addr, best.Workload.Kind, best.Namespace, best.Workload.Name, objectSource(txn, best.Object, best.Origin), winReason(best.Created, r.Created))})
	}
	sortProblems(ps)
	return best.Workload, slices.CompactFunc(ps, func(a, b Problem) bool { return a == b })
}

func compareWorkloadRows(a, b *workloadRow) int {
	return cmp.Or(cmp.Compare(kindRank(a.Workload.Kind), kindRank(b.Workload.Kind)), compareCreated(a.Created, b.Created),
		cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Workload.Name, b.Workload.Name), cmp.Compare(a.ID, b.ID))
}

// setAddress (re)computes the workload at an address and its conflicts.
func (v *view) setAddress(txn *memdb.Txn, addr string) {
	w, ps := workloadAt(txn, addr)
	if w != nil {
		v.byIP[addr] = w
	} else {
		delete(v.byIP, addr)
	}
	if len(ps) > 0 {
		v.addrConflicts[addr] = ps
	} else {
		delete(v.addrConflicts, addr)
	}
}

// fullView computes the merged model from scratch (the reference for the
// incremental update, and the first view).
func fullView(txn *memdb.Txn, revision uint64, trustDomain string) *view {
	v := emptyView(txn, revision)
	it, err := txn.Get(tableWorkloads, indexID)
	must(err)
	for obj := it.Next(); obj != nil; obj = it.Next() {
		for _, a := range obj.(*workloadRow).Addresses {
			v.setAddress(txn, a)
		}
	}
	hosts := map[string]bool{}
	it, err = txn.Get(tableServices, indexID)
	must(err)
	for obj := it.Next(); obj != nil; obj = it.Next() {
		hosts[obj.(*serviceRow).Hostname] = true
	}
	wl := &workloadIndex{txn: txn, byIP: v.byIP}
	for h := range hosts {
		v.setHost(h, wl, trustDomain)
	}
	v.sortServices()
	for _, svc := range v.services {
		v.indexAddresses(svc.Hostname)
	}
	v.peerAuths, v.destRules = collectPolicies(txn)
	v.sidecars = collectSidecars(txn)
	v.gateways, v.credentials = collectGateways(txn)
	v.groups = collectWorkloadGroups(txn)
	v.authz = collectAuthz(txn)
	v.collectVirtualServices(txn)
	v.drProblems = destRuleProblems(v, txn)
	return v
}

func emptyView(txn *memdb.Txn, revision uint64) *view {
	return &view{txn: txn, revision: revision, byHost: map[string]*Service{}, endpoints: map[string][]*Endpoint{},
		byIP: map[string]*Workload{}, svcsByAddr: map[string][]*Service{}, conflicts: map[string][]Problem{},
		addrConflicts: map[string][]Problem{}}
}

// setHost (re)computes one host; a host without service rows is removed.
func (v *view) setHost(host string, wl *workloadIndex, trustDomain string) {
	var rows []*serviceRow
	it, err := wl.txn.Get(tableServices, indexHostname, host)
	must(err)
	for obj := it.Next(); obj != nil; obj = it.Next() {
		rows = append(rows, obj.(*serviceRow))
	}
	delete(v.conflicts, host)
	if len(rows) == 0 {
		delete(v.byHost, host)
		delete(v.endpoints, host)
		return
	}
	svc, eps, ps := mergeHost(wl.txn, host, rows, wl, trustDomain)
	if len(ps) > 0 {
		v.conflicts[host] = ps
	}
	v.byHost[host] = svc
	if len(eps) > 0 {
		v.endpoints[host] = eps
	} else {
		delete(v.endpoints, host)
	}
}

func (v *view) sortServices() {
	v.services = v.services[:0:0]
	for _, svc := range v.byHost {
		v.services = append(v.services, svc)
	}
	slices.SortFunc(v.services, func(a, b *Service) int { return cmp.Compare(a.Hostname, b.Hostname) })
}

// addrKey keys the services of a workload: its address and namespace. An
// endpoint of another namespace at a workload's address (a ServiceEntry
// elsewhere listing it) does not make the workload serve that service.
func addrKey(addr, namespace string) string { return addr + "\x1f" + namespace }

// indexAddresses adds a host's service under each of its endpoint addresses
// and namespaces, keeping each list sorted by hostname.
func (v *view) indexAddresses(host string) {
	svc := v.byHost[host]
	seen := map[string]bool{}
	for _, ep := range v.endpoints[host] {
		key := addrKey(ep.Address, ep.Namespace)
		if seen[key] {
			continue
		}
		seen[key] = true
		list := slices.Clone(v.svcsByAddr[key])
		i, _ := slices.BinarySearchFunc(list, host, func(s *Service, h string) int { return cmp.Compare(s.Hostname, h) })
		v.svcsByAddr[key] = slices.Insert(list, i, svc)
	}
}

// unindexAddresses removes a host from the address lists.
func (v *view) unindexAddresses(host string) {
	for _, ep := range v.endpoints[host] {
		key := addrKey(ep.Address, ep.Namespace)
		list := v.svcsByAddr[key]
		i := slices.IndexFunc(list, func(s *Service) bool { return s.Hostname == host })
		if i < 0 {
			continue
		}
		if len(list) == 1 {
			delete(v.svcsByAddr, key)
			continue
		}
		v.svcsByAddr[key] = slices.Delete(slices.Clone(list), i, i+1)
	}
}

func collectPolicies(txn *memdb.Txn) ([]*PeerAuthentication, []*DestinationRule) {
	var pas []*PeerAuthentication
	var drs []*DestinationRule
	it, err := txn.Get(tablePolicies, indexID)
	must(err)
	for obj := it.Next(); obj != nil; obj = it.Next() {
		r := obj.(*policyRow)
		if r.PeerAuth != nil {
			pas = append(pas, r.PeerAuth)
		}
		if r.DestRule != nil {
			drs = append(drs, r.DestRule)
		}
	}
	slices.SortStableFunc(pas, func(a, b *PeerAuthentication) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	slices.SortStableFunc(drs, func(a, b *DestinationRule) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return pas, drs
}
