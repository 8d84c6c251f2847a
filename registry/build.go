package registry

import (
	"cmp"
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
// WorkloadEntries over ServiceEntry endpoints, then by namespace, name, ID.
func workloadAt(txn *memdb.Txn, addr string) *Workload {
	it, err := txn.Get(tableWorkloads, indexAddress, addr)
	must(err)
	var best *workloadRow
	for obj := it.Next(); obj != nil; obj = it.Next() {
		r := obj.(*workloadRow)
		if best == nil || compareWorkloadRows(r, best) < 0 {
			best = r
		}
	}
	if best == nil {
		return nil
	}
	return best.Workload
}

func compareWorkloadRows(a, b *workloadRow) int {
	return cmp.Or(cmp.Compare(kindRank(a.Workload.Kind), kindRank(b.Workload.Kind)),
		cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Workload.Name, b.Workload.Name), cmp.Compare(a.ID, b.ID))
}

// fullView computes the merged model from scratch (the reference for the
// incremental update, and the first view).
func fullView(txn *memdb.Txn, revision uint64, trustDomain string) *view {
	v := emptyView(txn, revision)
	it, err := txn.Get(tableWorkloads, indexID)
	must(err)
	for obj := it.Next(); obj != nil; obj = it.Next() {
		for _, a := range obj.(*workloadRow).Addresses {
			v.byIP[a] = workloadAt(txn, a)
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
	return v
}

func emptyView(txn *memdb.Txn, revision uint64) *view {
	return &view{txn: txn, revision: revision, byHost: map[string]*Service{}, endpoints: map[string][]*Endpoint{},
		byIP: map[string]*Workload{}, svcsByAddr: map[string][]*Service{}, conflicts: map[string][]Problem{}}
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

// indexAddresses adds a host's service under each of its endpoint addresses,
// keeping each list sorted by hostname.
func (v *view) indexAddresses(host string) {
	svc := v.byHost[host]
	seen := map[string]bool{}
	for _, ep := range v.endpoints[host] {
		if seen[ep.Address] {
			continue
		}
		seen[ep.Address] = true
		list := slices.Clone(v.svcsByAddr[ep.Address])
		i, _ := slices.BinarySearchFunc(list, host, func(s *Service, h string) int { return cmp.Compare(s.Hostname, h) })
		v.svcsByAddr[ep.Address] = slices.Insert(list, i, svc)
	}
}

// unindexAddresses removes a host from the address lists.
func (v *view) unindexAddresses(host string) {
	for _, ep := range v.endpoints[host] {
		list := v.svcsByAddr[ep.Address]
		i := slices.IndexFunc(list, func(s *Service) bool { return s.Hostname == host })
		if i < 0 {
			continue
		}
		if len(list) == 1 {
			delete(v.svcsByAddr, ep.Address)
			continue
		}
		v.svcsByAddr[ep.Address] = slices.Delete(slices.Clone(list), i, i+1)
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
