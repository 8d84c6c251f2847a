package snapshot

import (
	"cmp"
	"fmt"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"github.com/librarymesh/controlplane/meshname"
)

// Consistent reports a route configuration or endpoint set that a listener
// or cluster names but r lacks. Unlike go-control-plane's Snapshot.Consistent
// (v0.14.0), it follows api_listeners (proxyless gRPC) and allows resources
// nobody references.
func (r *Resources) Consistent() error { return r.ConsistentWith(nil) }

// ConsistentWith is Consistent for a proxy's own part, whose listeners and
// clusters may also name what its shared part (base, itself consistent)
// holds. Both are finished, so sorted by name: names are found by binary
// search, and the shared part is not walked.
func (r *Resources) ConsistentWith(base *Resources) error {
	if base == nil {
		base = &Resources{}
	}
	for _, x := range r.Listeners {
		l := x.(*listenerv3.Listener)
		for _, name := range rdsNames(l) {
			if !holds(r.Routes, name) && !holds(base.Routes, name) {
				return fmt.Errorf("listener %q names route configuration %q, which is missing", l.GetName(), name)
			}
		}
	}
	for _, x := range r.VirtualHosts {
		name := cachev3.GetResourceName(x)
		rc, ok := meshname.VHDSRouteConfig(name)
		if !ok || !holdsVHDS(r.Routes, rc) && !holdsVHDS(base.Routes, rc) {
			return fmt.Errorf("virtual host %q names no route configuration with vhds", name)
		}
	}
	for _, x := range r.Clusters {
		c := x.(*clusterv3.Cluster)
		if c.GetType() == clusterv3.Cluster_EDS && !holds(r.Endpoints, edsName(c)) && !holds(base.Endpoints, edsName(c)) {
			return fmt.Errorf("cluster %q has no ClusterLoadAssignment %q", c.GetName(), edsName(c))
		}
	}
	return nil
}

// holds reports whether a list sorted by name has a resource named name.
func holds(list []types.Resource, name string) bool {
	_, ok := slices.BinarySearchFunc(list, name, func(x types.Resource, name string) int {
		return cmp.Compare(cachev3.GetResourceName(x), name)
	})
	return ok
}

// holdsVHDS reports whether a list of route configurations sorted by name
// has one named name that takes virtual hosts over VHDS.
func holdsVHDS(list []types.Resource, name string) bool {
	i, ok := slices.BinarySearchFunc(list, name, func(x types.Resource, name string) int {
		return cmp.Compare(cachev3.GetResourceName(x), name)
	})
	return ok && list[i].(*routev3.RouteConfiguration).GetVhds() != nil
}

func edsName(c *clusterv3.Cluster) string {
	if n := c.GetEdsClusterConfig().GetServiceName(); n != "" {
		return n
	}
	return c.GetName()
}

// rdsNames are the route configurations a listener's HCMs fetch over RDS.
func rdsNames(l *listenerv3.Listener) []string {
	var names []string
	add := func(h *hcmv3.HttpConnectionManager) {
		if n := h.GetRds().GetRouteConfigName(); n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	if api := l.GetApiListener().GetApiListener(); api != nil {
		h := &hcmv3.HttpConnectionManager{}
		if api.UnmarshalTo(h) == nil {
			add(h)
		}
	}
	for _, fc := range append(slices.Clone(l.GetFilterChains()), l.GetDefaultFilterChain()) {
		for _, f := range fc.GetFilters() {
			h := &hcmv3.HttpConnectionManager{}
			if f.GetTypedConfig().MessageIs(h) && f.GetTypedConfig().UnmarshalTo(h) == nil {
				add(h)
			}
		}
	}
	return names
}
