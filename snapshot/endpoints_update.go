package snapshot

import (
	"fmt"
	"reflect"
	"slices"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/librarymesh/controlplane/registry"
)

// claSource is what a shared ClusterLoadAssignment was built from.
type claSource struct {
	host     string
	port     registry.Port
	subset   *registry.Subset // nil for the whole service
	locality *localityRule    // nil for none
	client   client           // whose view of the endpoints it is, under locality
	eps      endpointsID      // the host's endpoints it was built from
}

// WithEndpointChanges returns a Builder for view, the next model revision,
// in which only the endpoints of hosts changed. It keeps every listener,
// route and cluster b already built (the same protos), and rebuilds only the
// ClusterLoadAssignments of hosts, so proxies see a change in EDS alone.
// When that is not possible (a host resolves by DNS, so its endpoints are
// inside the cluster, or is gone; or b left out an invalid resource) it
// returns a fresh Builder.
func (b *Builder) WithEndpointChanges(view registry.View, hosts []string) *Builder {
	next := NewBuilder(view, b.opts)
	for _, h := range hosts {
		if svc := view.Service(h); svc == nil || svc.Resolution != registry.ResolutionStatic {
			return next
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.problems) > 0 || b.grpcAutoMTLSChangedLocked(view, hosts) { // something was left out, or a cluster's TLS changes: build it all again
		return next
	}
	// What b memoized is handed over, not copied (b keeps empty memos):
	// next drops the changed hosts' assignments, and checks each service
	// port's entry against its view when it uses it (see builtCluster).
	next.results = make(map[string]*proxyResult, len(b.results))
	b.handOverMemosLocked(next)
	stale := map[*endpointv3.ClusterLoadAssignment]claSource{}
	for key, src := range next.claSrc {
		if slices.Contains(hosts, src.host) {
			stale[next.cla[key]] = src
			delete(next.cla, key)
			delete(next.claSrc, key)
		}
	}
	for cla := range stale {
		delete(next.valid, cla)
	}
	for _, pair := range [][2]map[string]*memo{{b.sidecarOut, next.sidecarOut}, {b.vmOut, next.vmOut}, {b.grpcOut, next.grpcOut}, {b.gatewayOut, next.gatewayOut}} {
		for ns, m := range pair[0] {
			if m.err != nil {
				continue
			}
			if !holdsStale(m.res.Endpoints, stale) { // out of scope: the exact part carries over
				pair[1][ns] = m
				continue
			}
			res := *m.res
			res.Endpoints = next.refreshEndpointsLocked(m.res.Endpoints, stale)
			pair[1][ns] = &memo{res: &res}
		}
	}
	b.carryOverResultsLocked(next, hosts)
	return next
}

// carryOverResultsLocked gives next the results of proxies the change does
// not touch (no IP of theirs is an endpoint of a changed host, before or
// after, and their workloads are the same), with the new endpoints.
func (b *Builder) carryOverResultsLocked(next *Builder, hosts []string) {
	affected := map[string]bool{}
	for _, h := range hosts {
		for _, v := range []registry.View{b.view, next.view} {
			for _, ep := range v.Endpoints(h) {
				affected[ep.Address] = true
			}
		}
	}
	for key, r := range b.results {
		if !unaffected(r, affected, next.view) {
			continue
		}
		memos := next.sidecarOut
		switch {
		case r.loopback:
			memos = next.vmOut
		case r.kind == ProxylessGRPC:
			memos = next.grpcOut
		case r.kind == Router:
			memos = next.gatewayOut
		}
		m, ok := memos[r.scopeKey]
		if !ok || m.err != nil {
			continue
		}
		carried := *r
		carried.shared = m.res // a proxy's own part has no endpoints
		next.results[key] = &carried
	}
}

// unaffected reports whether a proxy's result stands in v: none of its IPs
// is an endpoint of a changed host, and its workloads are the same (the
// registry keeps an unchanged workload's pointer, so most are compared by
// pointer alone).
func unaffected(r *proxyResult, affected map[string]bool, v registry.View) bool {
	for i, ip := range r.ips {
		if affected[ip] {
			return false
		}
		if w := v.WorkloadByIP(ip); w != r.workloads[i] && !reflect.DeepEqual(r.workloads[i], w) {
			return false
		}
	}
	return true
}

// refreshEndpointsLocked rebuilds the stale assignments (of changed hosts,
// with what each was built from) in a finished list, keeping the rest; the
// order (by cluster name) does not change. An invalid new assignment is
// left out, as finish does.
func (b *Builder) refreshEndpointsLocked(list []types.Resource, stale map[*endpointv3.ClusterLoadAssignment]claSource) []types.Resource {
	out := make([]types.Resource, 0, len(list))
	for _, r := range list {
		cla := r.(*endpointv3.ClusterLoadAssignment)
		src, ok := stale[cla]
		if !ok {
			out = append(out, cla)
			continue
		}
		svc := b.view.Service(src.host)
		port, _ := svc.Port(src.port.Number) // an endpoints-only change keeps the ports
		cla = b.loadAssignmentLocked(svc, port, src.subset, src.locality, src.client)
		if err := cla.ValidateAll(); err != nil {
			b.problemLocked(fmt.Errorf("%T %q is invalid and left out: %w", cla, cla.GetClusterName(), err))
			continue
		}
		b.valid[cla] = struct{}{}
		out = append(out, cla)
	}
	return out
}
