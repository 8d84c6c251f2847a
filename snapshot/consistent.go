package snapshot

import (
	"cmp"
	"fmt"
	"math/bits"
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"

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
	return r.ConsistentSince(base, nil, nil)
}

// ConsistentSince is ConsistentWith for parts that replace prev (with its
// base prevBase), which were found consistent: what cannot have changed is
// not checked again. Finished lists are never modified, so a list with the
// same backing array is the same list. After an endpoint-only change a
// proxy keeps its listener, route and cluster lists, and its endpoint
// lists keep their names: a part walks again either those names or its
// clusters, whichever is shorter (an own part's few clusters, not the
// shared part's endpoint names). A nil prev checks everything.
func (r *Resources) ConsistentSince(base, prev, prevBase *Resources) error {
	if base == nil {
		base = &Resources{}
	}
	if prevBase == nil {
		prevBase = &Resources{}
	}
	sameRoutes := prev != nil && sameList(r.Routes, prev.Routes) && sameList(base.Routes, prevBase.Routes)
	if !sameRoutes || !sameList(r.Listeners, prev.Listeners) {
		for _, x := range r.Listeners {
			l := x.(*listenerv3.Listener)
			for _, name := range rdsNames(l) {
				if !holds(r.Routes, name) && !holds(base.Routes, name) {
					return fmt.Errorf("listener %q names route configuration %q, which is missing", l.GetName(), name)
				}
			}
		}
	}
	if !sameRoutes || !sameList(r.VirtualHosts, prev.VirtualHosts) {
		for _, x := range r.VirtualHosts {
			name := cachev3.GetResourceName(x)
			rc, ok := meshname.VHDSRouteConfig(name)
			if !ok || !holdsVHDS(r.Routes, rc) && !holdsVHDS(base.Routes, rc) {
				return fmt.Errorf("virtual host %q names no route configuration with vhds", name)
			}
		}
	}
	// Proving that no cluster needs checking again costs a comparison per
	// endpoint set; checking every cluster costs a binary search each.
	// Only the cheaper is done: a proxy's own part has a few clusters, next
	// to a shared part of 10,000 endpoint sets at 10,000 services.
	n := len(r.Endpoints) + len(base.Endpoints)
	if prev != nil && sameList(r.Clusters, prev.Clusters) && len(r.Clusters)*bits.Len(uint(n)) > n &&
		sameNames(r.Endpoints, prev.Endpoints) && sameNames(base.Endpoints, prevBase.Endpoints) {
		return nil
	}
	for _, x := range r.Clusters {
		c := x.(*clusterv3.Cluster)
		if c.GetType() == clusterv3.Cluster_EDS && !holds(r.Endpoints, edsName(c)) && !holds(base.Endpoints, edsName(c)) {
			return fmt.Errorf("cluster %q has no ClusterLoadAssignment %q", c.GetName(), edsName(c))
		}
	}
	return nil
}

// sameList reports whether a and b are the same list: the same length and
// backing array.
func sameList(a, b []types.Resource) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// sameNames reports whether a and b name the same resources, in order.
func sameNames(a, b []types.Resource) bool {
	if sameList(a, b) {
		return true
	}
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		// The same proto has the same name. After an endpoint change the
		// lists share all but the changed protos: the identity check spares
		// a name lookup for each of the others.
		if a[i] != b[i] && cachev3.GetResourceName(a[i]) != cachev3.GetResourceName(b[i]) {
			return false
		}
	}
	return true
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
	add := func(n string) {
		if n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	if api := l.GetApiListener().GetApiListener(); api != nil {
		add(hcmRDSName(api))
	}
	chain := func(fc *listenerv3.FilterChain) {
		for _, f := range fc.GetFilters() {
			add(hcmRDSName(f.GetTypedConfig()))
		}
	}
	for _, fc := range l.GetFilterChains() {
		chain(fc)
	}
	chain(l.GetDefaultFilterChain())
	return names
}

// hcmType is HttpConnectionManager's full name, as Anys name it after
// their last slash.
const hcmType = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"

// HttpConnectionManager's field numbers: the route_specifier oneof (rds,
// route_config, scoped_routes) and Rds.route_config_name.
const (
	hcmRdsField          = 3
	hcmRouteConfigField  = 4
	hcmScopedRoutesField = 31
	rdsRouteConfigName   = 2
)

// hcmRDSName returns the route configuration the HCM in a fetches over
// RDS, or "" (for none, or when a holds no HCM). It reads the encoded HCM's route_specifier instead of
// decoding the whole HCM: the consistency check runs for every proxy's own
// listeners after every change. Bytes it cannot read are decoded in full.
func hcmRDSName(a *anypb.Any) string {
	url := a.GetTypeUrl()
	if url[strings.LastIndexByte(url, '/')+1:] != hcmType {
		return ""
	}
	if name, ok := scanRDSName(a.GetValue()); ok {
		return name
	}
	h := &hcmv3.HttpConnectionManager{}
	if a.UnmarshalTo(h) != nil {
		return ""
	}
	return h.GetRds().GetRouteConfigName()
}

// scanRDSName reads Rds.route_config_name from an encoded HCM as decoding
// it would: occurrences of rds merge, and a later route_config or
// scoped_routes replaces it. It reports false for malformed bytes.
func scanRDSName(b []byte) (string, bool) {
	name := ""
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", false
		}
		b = b[n:]
		if typ == protowire.BytesType && num == hcmRdsField {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return "", false
			}
			b = b[m:]
			var ok bool
			if name, ok = scanField(v, rdsRouteConfigName, name); !ok {
				return "", false
			}
			continue
		}
		if num == hcmRouteConfigField || num == hcmScopedRoutesField {
			name = ""
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return "", false
		}
		b = b[m:]
	}
	return name, true
}

// scanField returns the last value of string field num in an encoded
// message, or last if it has none.
func scanField(b []byte, num protowire.Number, last string) (string, bool) {
	for len(b) > 0 {
		n, typ, k := protowire.ConsumeTag(b)
		if k < 0 {
			return "", false
		}
		b = b[k:]
		if n == num && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return "", false
			}
			last, b = string(v), b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(n, typ, b)
		if m < 0 {
			return "", false
		}
		b = b[m:]
	}
	return last, true
}
