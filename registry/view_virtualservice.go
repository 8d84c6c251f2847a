package registry

import (
	"cmp"
	"fmt"
	"slices"

	memdb "github.com/hashicorp/go-memdb"
)

// Problem reasons of VirtualServices found against the rest of the model.
const (
	// ReasonUnknownHost: a route destination names a host no service has.
	ReasonUnknownHost = "UnknownHost"
	// ReasonUnknownPort: a route destination names a port the service lacks,
	// or leaves it out when the service has several.
	ReasonUnknownPort = "UnknownPort"
	// ReasonUnknownSubset: no DestinationRule of the host defines the subset.
	ReasonUnknownSubset = "UnknownSubset"
	// ReasonUnknownGateway: a VirtualService binds a Gateway the registry
	// does not have; its routes apply once the Gateway exists.
	ReasonUnknownGateway = "UnknownGateway"
	// ReasonVirtualServiceConflict: two VirtualServices seen by one
	// namespace name one host; the older (or the first by namespace/name)
	// routes it.
	ReasonVirtualServiceConflict = "VirtualServiceConflict"
)

// VirtualServices returns every VirtualService, sorted as conflicts are
// decided (oldest first, then namespace/name).
func (v *view) VirtualServices() []*VirtualService { return v.virtualServices }

// vsRow is a VirtualService with where it was read, for problems.
type vsRow struct {
	vs     *VirtualService
	object string
	origin string
}

// collectVirtualServices reads the VirtualServices and checks them against
// the services and DestinationRules of the view.
func (v *view) collectVirtualServices(txn *memdb.Txn) {
	var rows []vsRow
	it, err := txn.Get(tablePolicies, indexID)
	must(err)
	for obj := it.Next(); obj != nil; obj = it.Next() {
		if r := obj.(*policyRow); r.VirtualService != nil {
			rows = append(rows, vsRow{vs: r.VirtualService, object: r.Object, origin: r.Origin})
		}
	}
	slices.SortStableFunc(rows, func(a, b vsRow) int { return compareVS(a.vs, b.vs) })
	v.virtualServices = make([]*VirtualService, len(rows))
	for i, r := range rows {
		v.virtualServices[i] = r.vs
	}
	v.vsProblems = nil
	for i, r := range rows {
		ps := vsDestinationProblems(v, r.vs)
		ps = append(ps, vsGatewayProblems(v.gateways, r.vs)...)
		ps = append(ps, vsConflicts(rows[:i], r.vs)...)
		src, name := objectSource(txn, r.object, r.origin), objectName(txn, r.object)
		for _, p := range ps {
			p.Source, p.Object = cmp.Or(r.vs.Lines[p.Field], src), name
			v.vsProblems = append(v.vsProblems, p)
		}
	}
}

// vsGatewayProblems names the gateways a VirtualService binds that are
// not Gateways of the registry ("mesh" is always there).
func vsGatewayProblems(gws []*Gateway, vs *VirtualService) []Problem {
	var out []Problem
	for i, g := range vs.Gateways {
		if g == MeshGateway || slices.ContainsFunc(gws, func(gw *Gateway) bool { return gw.Ref() == g }) {
			continue
		}
		out = append(out, Problem{Field: fmt.Sprintf("spec.gateways[%d]", i), Reason: ReasonUnknownGateway,
			Message: fmt.Sprintf("gateway %q is not a Gateway of the registry; the routes apply to it once it exists", g)})
	}
	return out
}

// vsDestinationProblems checks every destination of a VirtualService.
func vsDestinationProblems(v View, vs *VirtualService) []Problem {
	var out []Problem
	for _, d := range vsDestinations(vs) {
		if reason, msg := DestinationProblem(v, d, 0); reason != "" {
			out = append(out, Problem{Field: d.Field + ".destination", Reason: reason, Message: msg + "; the destination is left out"})
		}
	}
	return out
}

// DestinationProblem says why a route destination cannot be used (a
// reason and a message), or "" when it can. routePort is the service port
// being routed (0: unknown), used when the destination names no port.
func DestinationProblem(v View, d *Destination, routePort uint32) (reason, msg string) {
	svc := v.Service(d.Host)
	if svc == nil {
		return ReasonUnknownHost, fmt.Sprintf("host %q is not a service of the registry", d.Host)
	}
	if _, ok := DestinationPort(svc, d, routePort); !ok {
		if d.Port != 0 {
			return ReasonUnknownPort, fmt.Sprintf("service %s has no port %d", d.Host, d.Port)
		}
		if routePort == 0 {
			return "", "" // resolved per routed port
		}
		return ReasonUnknownPort, fmt.Sprintf("service %s has several ports and no port %d; name one", d.Host, routePort)
	}
	if d.Subset != "" {
		if _, ok := FindSubset(v.DestinationRules(), d.Host, d.Subset); !ok {
			return ReasonUnknownSubset, fmt.Sprintf("no DestinationRule for host %q defines subset %q", d.Host, d.Subset)
		}
	}
	return "", ""
}

// DestinationPort is the service port a destination sends to: its own
// port, else the service's only port, else the port being routed.
func DestinationPort(svc *Service, d *Destination, routePort uint32) (Port, bool) {
	switch {
	case d.Port != 0:
		return svc.Port(d.Port)
	case len(svc.Ports) == 1:
		return svc.Ports[0], true
	}
	return svc.Port(routePort)
}

// vsConflicts names, for a VirtualService, the earlier ones (which win)
// that name one of its hosts and are seen by a namespace that sees it too.
func vsConflicts(earlier []vsRow, vs *VirtualService) []Problem {
	if !vs.AppliesToMesh() {
		return nil
	}
	var out []Problem
	for i, h := range vs.Hosts {
		for _, e := range earlier {
			if !e.vs.AppliesToMesh() || !slices.Contains(e.vs.Hosts, h) || !exportsOverlap(e.vs.ExportTo, vs.ExportTo) {
				continue
			}
			out = append(out, Problem{Field: fmt.Sprintf("spec.hosts[%d]", i), Reason: ReasonVirtualServiceConflict,
				Message: fmt.Sprintf("host %q is also routed by VirtualService %s/%s, which wins (%s); this VirtualService is ignored for the host",
					h, e.vs.Namespace, e.vs.Name, winReason(e.vs.Created, vs.Created))})
			break
		}
	}
	return out
}

// exportsOverlap reports whether some namespace sees both exportTo lists.
func exportsOverlap(a, b []string) bool {
	all := func(l []string) bool { return len(l) == 0 || slices.Contains(l, "*") }
	if all(a) || all(b) {
		return !slices.Equal(a, []string{"~"}) && !slices.Equal(b, []string{"~"})
	}
	for _, ns := range a {
		if ns != "~" && slices.Contains(b, ns) {
			return true
		}
	}
	return false
}

// updateVirtualServices carries the VirtualServices over from old, or
// collects them again when policy changed or the services a destination
// may name did (a host or port came or went).
func (v *view) updateVirtualServices(old *view, txn *memdb.Txn, a affectedSet) {
	v.virtualServices, v.vsProblems = old.virtualServices, old.vsProblems
	if a.policy || (len(old.virtualServices) > 0 && servicesChanged(old, v, a)) {
		v.collectVirtualServices(txn)
	}
}

// servicesChanged reports whether a touched host came, went or changed ports.
func servicesChanged(old, next *view, a affectedSet) bool {
	for h := range a.hosts {
		o, n := old.byHost[h], next.byHost[h]
		if (o == nil) != (n == nil) || (o != nil && !slices.Equal(o.Ports, n.Ports)) {
			return true
		}
	}
	return false
}

// locateVirtualServices records where the hosts and destinations of a
// record's VirtualServices were read, so that a problem found against the
// model later names their line.
func locateVirtualServices(rec *record, locate func(field string) string) {
	if rec == nil || locate == nil {
		return
	}
	for _, r := range rec.Policies {
		vs := r.VirtualService
		if vs == nil {
			continue
		}
		var fields []string
		for i := range vs.Hosts {
			fields = append(fields, fmt.Sprintf("spec.hosts[%d]", i))
		}
		for i := range vs.Gateways {
			fields = append(fields, fmt.Sprintf("spec.gateways[%d]", i))
		}
		for _, d := range vsDestinations(vs) {
			fields = append(fields, d.Field+".destination")
		}
		for _, f := range fields {
			if line := locate(f); line != "" {
				if vs.Lines == nil {
					vs.Lines = map[string]string{}
				}
				vs.Lines[f] = line
			}
		}
	}
}

// vsDestinations are every destination of a VirtualService (routes and mirrors).
func vsDestinations(vs *VirtualService) []*Destination {
	var out []*Destination
	for i := range vs.HTTP {
		for j := range vs.HTTP[i].Route {
			out = append(out, &vs.HTTP[i].Route[j])
		}
		if vs.HTTP[i].Mirror != nil {
			out = append(out, vs.HTTP[i].Mirror)
		}
	}
	for _, rs := range [][]L4Route{vs.TCP, vs.TLS} {
		for i := range rs {
			for j := range rs[i].Route {
				out = append(out, &rs[i].Route[j])
			}
		}
	}
	return out
}
