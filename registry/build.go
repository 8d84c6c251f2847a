package registry

import (
	"cmp"
	"slices"

	memdb "github.com/hashicorp/go-memdb"
)

// buildView computes the merged model from a read transaction.
func buildView(txn *memdb.Txn, revision uint64, trustDomain string) *view {
	v := &view{
		txn:        txn,
		revision:   revision,
		byHost:     map[string]*Service{},
		endpoints:  map[string][]*Endpoint{},
		svcsByAddr: map[string][]*Service{},
	}
	wl := collectWorkloads(txn)
	v.byIP = wl.byIP
	for host, rows := range groupServices(txn) {
		svc, eps := mergeHost(txn, host, rows, wl, trustDomain)
		v.byHost[host] = svc
		if len(eps) > 0 {
			v.endpoints[host] = eps
		}
		v.services = append(v.services, svc)
	}
	slices.SortFunc(v.services, func(a, b *Service) int { return cmp.Compare(a.Hostname, b.Hostname) })
	for _, svc := range v.services {
		seen := map[string]bool{}
		for _, ep := range v.endpoints[svc.Hostname] {
			if !seen[ep.Address] {
				seen[ep.Address] = true
				v.svcsByAddr[ep.Address] = append(v.svcsByAddr[ep.Address], svc)
			}
		}
	}
	v.peerAuths, v.destRules = collectPolicies(txn)
	return v
}

func groupServices(txn *memdb.Txn) map[string][]*serviceRow {
	out := map[string][]*serviceRow{}
	it, err := txn.Get(tableServices, indexID)
	must(err)
	for obj := it.Next(); obj != nil; obj = it.Next() {
		r := obj.(*serviceRow)
		out[r.Hostname] = append(out[r.Hostname], r)
	}
	return out
}

// workloads indexes the workload rows of one revision.
type workloads struct {
	byIP       map[string]*Workload
	pods       map[string]*Workload      // "ns/name"
	selectable map[string][]*workloadRow // namespace -> Pods and WorkloadEntries
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

func collectWorkloads(txn *memdb.Txn) *workloads {
	w := &workloads{byIP: map[string]*Workload{}, pods: map[string]*Workload{}, selectable: map[string][]*workloadRow{}}
	it, err := txn.Get(tableWorkloads, indexID)
	must(err)
	var rows []*workloadRow
	for obj := it.Next(); obj != nil; obj = it.Next() {
		rows = append(rows, obj.(*workloadRow))
	}
	// Pods win over WorkloadEntries over ServiceEntry endpoints; then by name.
	slices.SortStableFunc(rows, func(a, b *workloadRow) int {
		return cmp.Or(cmp.Compare(kindRank(a.Workload.Kind), kindRank(b.Workload.Kind)),
			cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Workload.Name, b.Workload.Name))
	})
	for _, r := range rows {
		for _, a := range r.Addresses {
			if _, taken := w.byIP[a]; !taken {
				w.byIP[a] = r.Workload
			}
		}
		switch r.Workload.Kind {
		case KindPod:
			w.pods[r.Namespace+"/"+r.Workload.Name] = r.Workload
			w.selectable[r.Namespace] = append(w.selectable[r.Namespace], r)
		case KindWorkloadEntry:
			w.selectable[r.Namespace] = append(w.selectable[r.Namespace], r)
		}
	}
	return w
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
