package registry

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"time"

	memdb "github.com/hashicorp/go-memdb"

	"github.com/librarymesh/controlplane/meshname"
)

// mergeHost merges the Kubernetes Service and the ServiceEntry that name
// one host into a Service, and collects its endpoints: EndpointSlice and
// inline ServiceEntry endpoints, then WorkloadEntries and Pods that a
// ServiceEntry's workloadSelector picks. An endpoint is an address and its
// ports: endpoints are unique by address and the port each serves every
// service port on (two instances on one VM are two endpoints), sorted. Of several ServiceEntries naming the host one wins (see
// pickEntry); the others add nothing to it and each gets a problem.
func mergeHost(txn *memdb.Txn, host string, rows []*serviceRow, wl *workloadIndex, trustDomain string) (*Service, []*Endpoint, []Problem) {
	rows, losers := pickEntry(rows)
	slices.SortFunc(rows, compareServiceRows)
	svc := mergeService(host, rows)
	eps := hostEndpoints(txn, svc, rows, losers, wl)
	svc.ServiceAccounts = serviceAccounts(rows, eps, trustDomain)
	return svc, eps, conflictProblems(txn, host, rows, losers)
}

// pickEntry keeps the Kubernetes Service rows and one ServiceEntry: the
// oldest by creation time (a known time before an unknown one, as objects
// read from files have none), then the first by namespace, name and
// origin. It returns the rows kept and the objects (IDs) of the others.
func pickEntry(rows []*serviceRow) (kept []*serviceRow, losers map[string]*serviceRow) {
	var winner *serviceRow
	for _, r := range rows {
		if r.Kind != KindServiceEntry {
			kept = append(kept, r)
			continue
		}
		if winner == nil || compareEntries(r, winner) < 0 {
			winner = r
		}
	}
	if winner == nil {
		return kept, nil
	}
	for _, r := range rows {
		if r.Kind == KindServiceEntry && r != winner {
			if losers == nil {
				losers = map[string]*serviceRow{}
			}
			losers[r.Object] = r
		}
	}
	return append(kept, winner), losers
}

// compareEntries orders ServiceEntries naming one host: the winner first.
func compareEntries(a, b *serviceRow) int {
	return cmp.Or(compareCreated(a.Created, b.Created), cmp.Compare(a.Namespace, b.Namespace),
		cmp.Compare(a.Name, b.Name), cmp.Compare(a.Origin, b.Origin))
}

// compareCreated puts the older first, a known time before an unknown one.
func compareCreated(a, b time.Time) int {
	if a.IsZero() != b.IsZero() {
		if a.IsZero() {
			return 1
		}
		return -1
	}
	return a.Compare(b)
}

// conflictProblems names, for each ServiceEntry that lost the host, the
// one that won.
func conflictProblems(txn *memdb.Txn, host string, kept []*serviceRow, losers map[string]*serviceRow) []Problem {
	if len(losers) == 0 {
		return nil
	}
	winner := kept[len(kept)-1]
	for _, r := range kept {
		if r.Kind == KindServiceEntry {
			winner = r
		}
	}
	out := make([]Problem, 0, len(losers))
	for _, r := range losers {
		key := ObjectKey{Kind: KindServiceEntry, Namespace: r.Namespace, Name: r.Name}
		out = append(out, Problem{
			Source: objectSource(txn, r.Object, r.Origin), Object: key.String(), Field: r.HostField, Reason: ReasonHostConflict,
			Message: fmt.Sprintf("host %q is also named by ServiceEntry %s/%s (%s), which serves it (%s); this ServiceEntry is ignored for the host",
				host, winner.Namespace, winner.Name, objectSource(txn, winner.Object, winner.Origin), winReason(winner.Created, r.Created)),
		})
	}
	sortProblems(out)
	return out
}

func winReason(winner, loser time.Time) string {
	if !winner.IsZero() && !winner.Equal(loser) {
		return "it is older"
	}
	return "it comes first by namespace/name"
}

// objectSource is where an object (by ID) was read: "file.yaml:12", the
// file, or "ns/name".
func objectSource(txn *memdb.Txn, id, origin string) string {
	obj, err := txn.First(tableObjects, indexID, id)
	must(err)
	if obj == nil {
		return origin
	}
	row := obj.(*objectRow)
	return sourceOf(row.Origin, row.Key, row.Source)
}

// objectName is an object's "Kind ns/name", by ID.
func objectName(txn *memdb.Txn, id string) string {
	obj, err := txn.First(tableObjects, indexID, id)
	must(err)
	if obj == nil {
		return ""
	}
	return obj.(*objectRow).Key.String()
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
	svc.ExportTo = mergeExportTo(rows)
	return svc
}

// mergeExportTo is where every row is exported: the intersection of their
// lists (empty and "*" mean everywhere); "~" when it is nowhere.
func mergeExportTo(rows []*serviceRow) []string {
	var out []string
	all := true
	for _, r := range rows {
		if len(r.ExportTo) == 0 || slices.Contains(r.ExportTo, "*") {
			continue
		}
		if all {
			out, all = slices.Clone(r.ExportTo), false
			continue
		}
		out = slices.DeleteFunc(out, func(ns string) bool { return !slices.Contains(r.ExportTo, ns) })
	}
	if !all && len(out) == 0 {
		return []string{"~"}
	}
	return out
}

// hostEndpoints collects the endpoints of a host; those of ServiceEntries
// that lost it (losers, by object ID) are left out. The first endpoint with
// a given address and ports wins (EndpointSlice endpoints before those a
// workloadSelector picks, so a pod both name is one endpoint).
func hostEndpoints(txn *memdb.Txn, svc *Service, rows []*serviceRow, losers map[string]*serviceRow, wl *workloadIndex) []*Endpoint {
	var eps []*Endpoint
	seen := map[string]bool{}
	add := func(ep *Endpoint) {
		if key := endpointKey(ep, svc.Ports); !seen[key] {
			seen[key] = true
			eps = append(eps, ep)
		}
	}
	it, err := txn.Get(tableEndpoints, indexHostname, svc.Hostname)
	must(err)
	for obj := it.Next(); obj != nil; obj = it.Next() {
		if r := obj.(*endpointRow); losers[r.Object] == nil {
			add(enrichEndpoint(r, wl))
		}
	}
	for _, r := range rows {
		if !r.UseSelector {
			continue
		}
		for _, w := range wl.selectable(r.Namespace) {
			if labelsMatch(r.Selector, w.Workload.Labels) {
				add(endpointFromWorkload(svc.Hostname, w.Workload, w.Weight, w.Ready))
			}
		}
	}
	slices.SortFunc(eps, func(a, b *Endpoint) int {
		return cmp.Or(cmp.Compare(a.Address, b.Address), compareServedPorts(a, b, svc.Ports), cmp.Compare(a.Workload, b.Workload))
	})
	return eps
}

// endpointKey is an endpoint's identity within a service: its address and
// the port it serves each of the service's ports on.
func endpointKey(ep *Endpoint, ports []Port) string {
	b := []byte(ep.Address)
	for _, p := range ports {
		b = strconv.AppendUint(append(b, '|'), uint64(ep.PortFor(p)), 10)
	}
	return string(b)
}

// compareServedPorts orders endpoints by the ports they serve the service's
// ports on, in port order.
func compareServedPorts(a, b *Endpoint, ports []Port) int {
	for _, p := range ports {
		if c := cmp.Compare(a.PortFor(p), b.PortFor(p)); c != 0 {
			return c
		}
	}
	return 0
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
	ep.Labels, ep.ServiceAccount, ep.TLSMode = pod.Labels, pod.ServiceAccount, pod.TLSMode
	if pod.Locality != "" {
		ep.Locality = pod.Locality
	}
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
			out = append(out, meshname.SPIFFEID(trustDomain, ep.Namespace, ep.ServiceAccount))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
