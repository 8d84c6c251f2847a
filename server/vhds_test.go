package server

import (
	"fmt"
	"slices"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	networkingapi "istio.io/api/networking/v1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// deltaClient is an Envoy-like delta ADS stream in a test: it ACKs every
// response and keeps them, by type.
type deltaClient struct {
	t  *testing.T
	st discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	rx *receiver[*discoveryv3.DeltaDiscoveryResponse]
}

func (c *deltaClient) send(req *discoveryv3.DeltaDiscoveryRequest) {
	c.t.Helper()
	if err := c.st.Send(req); err != nil {
		c.t.Fatal(err)
	}
}

// responses ACKs and returns what arrives within d, by type.
func (c *deltaClient) responses(d time.Duration) map[string][]*discoveryv3.DeltaDiscoveryResponse {
	c.t.Helper()
	out := map[string][]*discoveryv3.DeltaDiscoveryResponse{}
	for {
		resp, err := c.rx.next(d)
		if err != nil {
			return out
		}
		c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()})
		out[resp.GetTypeUrl()] = append(out[resp.GetTypeUrl()], resp)
	}
}

func resourceNames(resps []*discoveryv3.DeltaDiscoveryResponse) []string {
	var out []string
	for _, r := range resps {
		for _, res := range r.GetResources() {
			out = append(out, res.GetName())
		}
	}
	slices.Sort(out)
	return out
}

// httpEntry is an HTTP ServiceEntry on 8080 without addresses.
func httpEntry(name string) *networkingv1.ServiceEntry {
	return &networkingv1.ServiceEntry{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: networkingapi.ServiceEntry{Hosts: []string{name + ".default.svc.cluster.local"}, Resolution: networkingapi.ServiceEntry_STATIC,
			Location:  networkingapi.ServiceEntry_MESH_INTERNAL,
			Ports:     []*networkingapi.ServicePort{{Number: 8080, Name: "http", Protocol: "HTTP"}},
			Endpoints: []*networkingapi.WorkloadEntry{{Address: "10.40.0.1"}}}}
}

// manyHosts is httpEntry("many") with n hosts of long names instead of
// its one: config of a size a test needs (300 hosts: about 100 KB of
// clusters).
func manyHosts(n int) *networkingv1.ServiceEntry {
	se := httpEntry("many")
	se.Spec.Hosts = nil
	for i := range n {
		se.Spec.Hosts = append(se.Spec.Hosts, fmt.Sprintf("host-%03d-with-a-long-name.example.internal", i))
	}
	return se
}

// TestDeltaSidecarGetsVirtualHostsOverVHDS: an Envoy sidecar on a delta
// ADS stream gets route configuration 8080 with vhds and the catch-all
// only, subscribes to its virtual hosts by its name (as Envoy's VHDS does)
// and gets them all; a new HTTP ServiceEntry then sends one virtual host,
// one cluster and one assignment, and no route configuration; removing it
// removes the three.
func TestDeltaSidecarGetsVirtualHostsOverVHDS(t *testing.T) {
	s, store := startLibrary(t)
	if ps := store.Upsert("test", httpEntry("first")); len(ps) > 0 {
		t.Fatalf("upsert: %v", ps)
	}
	st, rx := deltaStream(t, s)
	c := &deltaClient{t: t, st: st, rx: rx}
	c.send(&discoveryv3.DeltaDiscoveryRequest{Node: node(podNodeID), TypeUrl: resourcev3.ClusterType})
	c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.RouteType, ResourceNamesSubscribe: []string{"8080"}})
	got := c.responses(time.Second)
	rds := got[resourcev3.RouteType]
	if len(rds) != 1 || len(rds[0].GetResources()) != 1 {
		t.Fatalf("RDS responses %v, want one with route configuration 8080", rds)
	}
	rc := &routev3.RouteConfiguration{}
	if err := rds[0].GetResources()[0].GetResource().UnmarshalTo(rc); err != nil {
		t.Fatal(err)
	}
	if rc.GetVhds() == nil || len(rc.GetVirtualHosts()) != 1 || rc.GetVirtualHosts()[0].GetDomains()[0] != "*" {
		t.Fatalf("route configuration 8080 over delta ADS: vhds %v, %d virtual hosts; want vhds and the catch-all alone", rc.GetVhds(), len(rc.GetVirtualHosts()))
	}

	c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.VirtualHostType, ResourceNamesSubscribe: []string{"8080"}})
	first := resourceNames(c.responses(time.Second)[resourcev3.VirtualHostType])
	want := []string{"8080/first.default.svc.cluster.local:8080", "8080/inventory.default.svc.cluster.local:8080"}
	if !slices.Equal(first, want) {
		t.Fatalf("VHDS subscription to 8080 sent %q, want %q", first, want)
	}

	if ps := store.Upsert("test", httpEntry("second")); len(ps) > 0 {
		t.Fatalf("upsert: %v", ps)
	}
	got = c.responses(time.Second)
	const host = "second.default.svc.cluster.local"
	for typeURL, want := range map[string][]string{
		resourcev3.VirtualHostType: {"8080/" + host + ":8080"},
		resourcev3.ClusterType:     {"outbound|8080||" + host},
		resourcev3.EndpointType:    nil, // not subscribed here
		resourcev3.RouteType:       nil,
	} {
		if names := resourceNames(got[typeURL]); !slices.Equal(names, want) {
			t.Errorf("new HTTP ServiceEntry: %s sent %q, want %q", shortType(typeURL), names, want)
		}
	}

	store.Delete("test", "ServiceEntry", "default", "second")
	got = c.responses(time.Second)
	var removed []string
	for _, r := range got[resourcev3.VirtualHostType] {
		removed = append(removed, r.GetRemovedResources()...)
	}
	if want := []string{"8080/" + host + ":8080"}; !slices.Equal(removed, want) || len(resourceNames(got[resourcev3.VirtualHostType])) > 0 {
		t.Errorf("removed ServiceEntry: VHDS removed %q and sent %q, want %q removed alone", removed, resourceNames(got[resourcev3.VirtualHostType]), want)
	}
	if len(got[resourcev3.RouteType]) > 0 {
		t.Errorf("removed ServiceEntry: RDS sent again")
	}
}
