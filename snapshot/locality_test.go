package snapshot

import (
	"slices"
	"testing"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/librarymesh/controlplane/meshname"
	"github.com/librarymesh/controlplane/registry"
)

// TestLocalityFastPath: with locality failover, two proxyless clients in
// two zones get their own priorities, and an endpoints-only change (the
// fast path) keeps each client's view: every client's EDS equals a full
// build and puts its own zone first.
func TestLocalityFastPath(t *testing.T) {
	inv := "inventory.default.svc.cluster.local"
	rule := []*registry.DestinationRule{{Namespace: "default", Name: "inventory", Host: inv,
		TrafficPolicy: &registry.TrafficPolicy{OutlierDetection: &registry.OutlierDetection{}}}}
	before, after := libraryView(nil, rule), libraryView(nil, rule)
	after.endpoints = append(after.endpoints, &registry.Endpoint{Hostname: inv, Namespace: "default", Address: "10.8.0.9",
		Ready: true, Locality: "us-east1/us-east1-c", Workload: "Pod default/inventory-xyz"})
	grpc := map[string]any{"GENERATOR": "grpc"}
	zones := []string{"us-east1-b", "us-east1-c", "us-east1-b"}
	proxies := []*Proxy{
		mustProxyIn(t, "sidecar~10.8.0.20~client-1.default~default.svc.cluster.local", grpc, "us-east1/us-east1-b"),
		mustProxyIn(t, "sidecar~10.8.0.21~client-2.default~default.svc.cluster.local", grpc, "us-east1/us-east1-c"),
		mustProxyIn(t, "sidecar~10.8.0.22~client-3.default~default.svc.cluster.local", nil, "us-east1/us-east1-b"),
	}
	b := NewBuilder(before, Options{})
	for i, p := range proxies {
		res, err := b.Build(p)
		if err != nil {
			t.Fatal(err)
		}
		checkLocalFirst(t, p.ID, res, inv, zones[i])
	}
	next, fresh := b.WithEndpointChanges(after, []string{inv}), NewBuilder(after, Options{})
	for i, p := range proxies {
		got, err := next.Build(p)
		if err != nil {
			t.Fatal(err)
		}
		want, err := fresh.Build(p)
		if err != nil {
			t.Fatal(err)
		}
		if g, w := renderGolden(t, "x", got)["x.eds.yaml"], renderGolden(t, "x", want)["x.eds.yaml"]; string(g) != string(w) {
			t.Errorf("%s: EDS from the fast path differs from a full build:\n%s", p.ID, firstDiff(string(w), string(g)))
		}
		checkLocalFirst(t, p.ID, got, inv, zones[i])
	}
}

// checkLocalFirst checks host's default assignment has exactly the
// localities of zone at priority 0 and every other one after.
func checkLocalFirst(t *testing.T, node string, res *Resources, host, zone string) {
	t.Helper()
	cla := find[*endpointv3.ClusterLoadAssignment](t, res.Endpoints, meshname.OutboundCluster(8080, "", host))
	for _, l := range cla.GetEndpoints() {
		if (l.GetLocality().GetZone() == zone) != (l.GetPriority() == 0) {
			t.Errorf("%s: locality %v has priority %d, want 0 only for zone %s", node, l.GetLocality(), l.GetPriority(), zone)
		}
	}
}

// TestLocalityPriority: the rank of an endpoint's locality seen from a
// client, with and without a failover rule for the client's region.
func TestLocalityPriority(t *testing.T) {
	failover := []registry.LocalityFailover{{From: "r1", To: "r3"}}
	tests := []struct {
		client, ep string
		failover   []registry.LocalityFailover
		want       uint32
	}{
		{"r1/z1/s1", "r1/z1/s1", nil, 0},
		{"r1/z1/s1", "r1/z1/s2", nil, 1},
		{"r1/z1", "r1/z2", nil, 2},
		{"r1/z1", "r2/z1", nil, 3},
		{"r1/z1", "r3/z1", failover, 3},
		{"r1/z1", "r2/z1", failover, 4},
		{"r2/z1", "r1/z1", failover, 3}, // the rule is for r1 only
		{"", "", nil, 0},
		{"", "r1/z1", nil, 3},
	}
	for _, tc := range tests {
		if got := localityPriority(tc.client, tc.ep, tc.failover); got != tc.want {
			t.Errorf("localityPriority(%q, %q, %v) = %d, want %d", tc.client, tc.ep, tc.failover, got, tc.want)
		}
	}
}

// TestLocalityMatch: patterns match by region, zone and subzone, each
// equal, `*` or left out.
func TestLocalityMatch(t *testing.T) {
	tests := []struct {
		locality, pattern string
		want              bool
	}{
		{"r1/z1/s1", "r1/z1/s1", true},
		{"r1/z1/s1", "r1/z1/*", true},
		{"r1/z1/s1", "r1/*", true},
		{"r1/z1/s1", "r1", true},
		{"r1/z1/s1", "*", true},
		{"r1/z1/s1", "r1/z2/*", false},
		{"r1/z1", "r1/z1/s1", false},
		{"r2/z1", "r1/*", false},
	}
	for _, tc := range tests {
		if got := localityMatch(tc.locality, tc.pattern); got != tc.want {
			t.Errorf("localityMatch(%q, %q) = %t, want %t", tc.locality, tc.pattern, got, tc.want)
		}
	}
}

// TestSpecificFirst: a locality goes to its most specific distribute target.
func TestSpecificFirst(t *testing.T) {
	got := specificFirst([]string{"*", "r1/*", "r1/z1/*", "r1", "r1/z1/s1"})
	want := []string{"r1/z1/s1", "r1/z1/*", "r1/*", "r1", "*"}
	if !slices.Equal(got, want) {
		t.Errorf("specificFirst = %v, want %v", got, want)
	}
}

// TestLabelPriority: failoverPriority ranks an endpoint by the first label
// it differs from the client in (topology labels derive from localities
// and networks; `label=value` compares with the value given).
func TestLabelPriority(t *testing.T) {
	c := newClient("r1/z1", "net1", map[string]string{"version": "v1"})
	ep := func(version, locality, network string) *registry.Endpoint {
		return &registry.Endpoint{Labels: map[string]string{"version": version}, Locality: locality, Network: network}
	}
	prio := []string{registry.LabelTopologyNetwork, "version", registry.LabelTopologyRegion}
	tests := []struct {
		name     string
		ep       *registry.Endpoint
		priority []string
		want     uint32
	}{
		{"all match", ep("v1", "r1/z2", "net1"), prio, 0},
		{"other region", ep("v1", "r2/z1", "net1"), prio, 1},
		{"other version", ep("v2", "r1/z1", "net1"), prio, 2},
		{"other network", ep("v1", "r1/z1", "net2"), prio, 3},
		{"fixed value matches", ep("v2", "r1/z1", ""), []string{"version=v2"}, 0},
		{"fixed value differs", ep("v1", "r1/z1", ""), []string{"version=v2"}, 1},
	}
	for _, tc := range tests {
		if got := labelPriority(tc.ep, tc.priority, c.labels); got != tc.want {
			t.Errorf("%s: labelPriority = %d, want %d", tc.name, got, tc.want)
		}
	}
	if got := labelPriority(ep("v2", "r2/z1", ""), prio, nil); got != 0 {
		t.Errorf("a client without labels: priority %d, want 0 (as Istio)", got)
	}
}
