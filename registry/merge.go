package registry

import (
	"cmp"
	"slices"

	memdb "github.com/hashicorp/go-memdb"
)

// mergeHost merges the Kubernetes Service and ServiceEntries that name one
// host into a Service, and collects its endpoints: EndpointSlice and inline
// ServiceEntry endpoints, then WorkloadEntries and Pods that a ServiceEntry's
// workloadSelector picks. Endpoints are unique by address, sorted.
func mergeHost(txn *memdb.Txn, host string, rows []*serviceRow, wl *workloadIndex, trustDomain string) (*Service, []*Endpoint) {
	slices.SortFunc(rows, compareServiceRows)
	svc := mergeService(host, rows)
	eps := hostEndpoints(txn, host, rows, wl)
	svc.ServiceAccounts = serviceAccounts(rows, eps, trustDomain)
	return svc, eps
}

// compareServiceRows puts Kubernetes Services before ServiceEntries.
func compareServiceRows(a, b *serviceRow) int {
	return cmp.Or(cmp.Compare(kindOrder(a.Kind), kindOrder(b.Kind)), cmp.Compare(a.Namespace, b.Namespace),
		cmp.Compare(a.Name, b.Name), cmp.Compare(a.Origin, b.Origin))
}

func kindOrder(kind string) int {
	if kind == KindService {
		return 0
	}
	return 1
}

func mergeService(host string, rows []*serviceRow) *Service {
	first := rows[0]
	svc := &Service{Hostname: host, Namespace: first.Namespace, Name: first.Name,
		Resolution: first.Resolution, Location: first.Location}
	if i := slices.IndexFunc(rows, func(r *serviceRow) bool { return r.Kind == KindServiceEntry }); i >= 0 {
		svc.Resolution, svc.Location = rows[i].Resolution, rows[i].Location
	}
	for _, r := range rows {
		for _, a := range r.Addresses {
			if !slices.Contains(svc.Addresses, a) {
				svc.Addresses = append(svc.Addresses, a)
			}
		}
		for _, p := range r.Ports {
			if _, ok := svc.Port(p.Number); !ok {
				svc.Ports = append(svc.Ports, p)
			}
		}
		if src := r.Kind + " " + r.Namespace + "/" + r.Name; !slices.Contains(svc.Sources, src) {
			svc.Sources = append(svc.Sources, src)
		}
	}
	slices.SortFunc(svc.Ports, comparePorts)
	slices.Sort(svc.Sources)
	return svc
}

func hostEndpoints(txn *memdb.Txn, host string, rows []*serviceRow, wl *workloadIndex) []*Endpoint {
	var eps []*Endpoint
	seen := map[string]bool{}
	add := func(ep *Endpoint) {
		if !seen[ep.Address] {
			seen[ep.Address] = true
			eps = append(eps, ep)
		}
	}
	it, err := txn.Get(tableEndpoints, indexHostname, host)
	must(err)
	for obj := it.Next(); obj != nil; obj = it.Next() {
		add(enrichEndpoint(obj.(*endpointRow), wl))
	}
	for _, r := range rows {
		if !r.UseSelector {
			continue
		}
		for _, w := range wl.selectable(r.Namespace) {
			if labelsMatch(r.Selector, w.Workload.Labels) {
				add(endpointFromWorkload(host, w.Workload, w.Weight, w.Ready))
			}
		}
	}
	slices.SortFunc(eps, func(a, b *Endpoint) int {
		return cmp.Or(cmp.Compare(a.Address, b.Address), cmp.Compare(a.Workload, b.Workload))
	})
	return eps
}

// enrichEndpoint fills in an EndpointSlice endpoint's labels and service
// account from its Pod. Stored rows are never modified: it copies.
func enrichEndpoint(r *endpointRow, wl *workloadIndex) *Endpoint {
	var pod *Workload
	if r.PodRef != "" {
		pod = wl.pod(r.PodRef)
	} else if w := wl.byIP[r.Address]; w != nil && w.Kind == KindPod && r.Endpoint.Workload == "" {
		pod = w
	}
	if pod == nil {
		return r.Endpoint
	}
	ep := *r.Endpoint
	ep.Labels, ep.ServiceAccount = pod.Labels, pod.ServiceAccount
	ep.Workload = "Pod " + pod.Namespace + "/" + pod.Name
	return &ep
}

// labelsMatch reports whether labels has every key and value of selector.
// An empty selector matches everything, as in Istio.
func labelsMatch(selector, labels map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// serviceAccounts are the ServiceEntries' subjectAltNames plus the
// endpoints' service accounts as SPIFFE IDs, sorted and unique.
func serviceAccounts(rows []*serviceRow, eps []*Endpoint, trustDomain string) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r.SubjectAltNames...)
	}
	for _, ep := range eps {
		if ep.ServiceAccount != "" {
			out = append(out, SpiffeID(trustDomain, ep.Namespace, ep.ServiceAccount))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// SpiffeID is the identity of a Kubernetes service account:
// spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT.
func SpiffeID(trustDomain, namespace, serviceAccount string) string {
	return "spiffe://" + trustDomain + "/ns/" + namespace + "/sa/" + serviceAccount
}
