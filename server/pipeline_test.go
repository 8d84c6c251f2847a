package server

import (
	"log/slog"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/librarymesh/controlplane/registry"
	"github.com/librarymesh/controlplane/registry/yamldir"
)

const vmNodeID = "sidecar~10.128.0.14~postgres-1-vm.default~default.svc.cluster.local"

var _ Registry = (*registry.Store)(nil)

// startLibrary serves examples/library through the real registry and
// snapshot builder.
func startLibrary(t *testing.T) (*Server, *registry.Store) {
	t.Helper()
	store := registry.NewStore(slog.New(slog.DiscardHandler))
	if ps := yamldir.Load("../examples/library", store); len(ps) > 0 {
		t.Fatalf("examples/library has problems: %v", ps)
	}
	s, err := New(Config{GRPCAddr: "127.0.0.1:0", Registry: store, Debounce: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	run(t, s)
	return s, store
}

// ackAll requests every type on a SotW stream, ACKing each response, and
// returns the resource names per type.
func ackAll(t *testing.T, st discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient, rx *receiver[*discoveryv3.DiscoveryResponse], id string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, typeURL := range []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType} {
		if err := st.Send(&discoveryv3.DiscoveryRequest{Node: node(id), TypeUrl: typeURL}); err != nil {
			t.Fatal(err)
		}
		resp, err := rx.next(5 * time.Second)
		if err != nil {
			t.Fatalf("%s: no %s response: %v", id, shortType(typeURL), err)
		}
		for _, a := range resp.GetResources() {
			r, err := a.UnmarshalNew()
			if err != nil {
				t.Fatal(err)
			}
			out[typeURL] = append(out[typeURL], cache.GetResourceName(r))
		}
		ack := &discoveryv3.DiscoveryRequest{TypeUrl: typeURL, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
		if err := st.Send(ack); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestLibraryEndpointChangeRebuildsOnlyUsers(t *testing.T) {
	s, store := startLibrary(t)
	pod, podRx := sotwStream(t, s)
	got := ackAll(t, pod, podRx, podNodeID)
	const pg = "outbound|5432||postgres-1-vm.default.svc.cluster.local"
	if !slices.Contains(got[resourcev3.ClusterType], pg) {
		t.Fatalf("pod sidecar clusters %v lack %s", got[resourcev3.ClusterType], pg)
	}
	vm, vmRx := sotwStream(t, s)
	ackAll(t, vm, vmRx, vmNodeID)
	waitCSDS(t, s, vmNodeID, resourcev3.RouteType, adminv3.ClientResourceStatus_ACKED)
	before := value(t, s.metrics.builds)

	// One more inventory pod: an endpoints-only change of one service.
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "inventory-extra", Namespace: "default", Labels: map[string]string{"kubernetes.io/service-name": "inventory"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080))}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.8.0.7"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}}},
	}
	if ps := store.Upsert("test", slice); len(ps) > 0 {
		t.Fatalf("upsert: %v", ps)
	}
	for name, rx := range map[string]*receiver[*discoveryv3.DiscoveryResponse]{"pod": podRx, "vm": vmRx} {
		resp, err := rx.next(5 * time.Second)
		if err != nil {
			t.Fatalf("%s sidecar got nothing after an endpoint change: %v", name, err)
		}
		if resp.GetTypeUrl() != resourcev3.EndpointType || len(resp.GetResources()) != 1 {
			t.Errorf("%s sidecar got %s with %d resources after an endpoint change, want EDS with only inventory's",
				name, shortType(resp.GetTypeUrl()), len(resp.GetResources()))
		}
		if n := rx.count(200 * time.Millisecond); n != 0 {
			t.Errorf("%s sidecar got %d more responses, want only EDS", name, n)
		}
	}
	rebuilt := value(t, s.metrics.builds) - before
	t.Logf("one endpoint added to one service: %v of 2 connected proxies' snapshots rebuilt", rebuilt)
	if rebuilt < 1 || rebuilt > 2 {
		t.Errorf("rebuilt %v snapshots, want 1 or 2", rebuilt)
	}
}

func ptr[T any](v T) *T { return &v }

func TestRegistryMetrics(t *testing.T) {
	s, store := startLibrary(t)
	scrape := func() string {
		rec := httptest.NewRecorder()
		s.httpHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		return rec.Body.String()
	}
	page := scrape()
	for sample, want := range map[string]float64{
		`controlplane_registry_objects{kind="Service"}`:            2,
		`controlplane_registry_objects{kind="Endpoint"}`:           3,
		`controlplane_registry_objects{kind="PeerAuthentication"}`: 1,
		`controlplane_registry_objects{kind="DestinationRule"}`:    2,
		`controlplane_config_errors`:                               0,
	} {
		if got := metricValue(t, page, sample); got != want {
			t.Errorf("%s = %v, want %v", sample, got, want)
		}
	}
	bad := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "bad", Namespace: "default"}, AddressType: "IPv9"}
	if ps := store.Upsert("broken.yaml", bad); len(ps) == 0 {
		t.Fatal("an EndpointSlice with addressType IPv9 was accepted")
	}
	if got := metricValue(t, scrape(), `controlplane_config_errors`); got < 1 {
		t.Errorf("config_errors = %v after a bad object, want >= 1", got)
	}
}
