package main

import (
	"fmt"
	"maps"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	networkingapi "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/librarymesh/controlplane/internal/e2e"
	"github.com/librarymesh/controlplane/internal/kubetest"
)

// These tests run `controlplane serve --kubeconfig` as its own process
// against a real kube-apiserver (one per test, see kubeServe), with a
// grpc-go xDS client and a hand-written pod sidecar ADS stream as proxies.

const (
	backendServing    = healthpb.HealthCheckResponse_SERVING
	backendNotServing = healthpb.HealthCheckResponse_NOT_SERVING
)

func loopbackAddr(port int) []string { return []string{fmt.Sprintf("127.0.0.1:%d", port)} }

// hasEcho reports whether s has the echo cluster with exactly the endpoint
// 127.0.0.1:port, and the inventory cluster with invAddrs.
func hasEcho(port int, invAddrs ...string) func(adsState) bool {
	return func(s adsState) bool {
		return slices.Contains(s.clusters, invCluster) && slices.Contains(s.clusters, echoCluster) &&
			slices.Equal(s.endpoints[invCluster], invAddrs) && slices.Equal(s.endpoints[echoCluster], loopbackAddr(port))
	}
}

// Creating, updating and deleting a Service + EndpointSlice and a
// ServiceEntry reaches a connected pod sidecar and a grpc-go client, whose
// RPCs follow the entry's endpoint; an entry written through v1beta1 works
// the same.
func TestKubeServicesReachProxies(t *testing.T) {
	first, second := e2e.HealthBackend(t, backendServing), e2e.HealthBackend(t, backendNotServing)
	e, srv := kubeServe(t)
	side := watchADS(t, srv.GRPCAddr, sidecarNode)
	cc := e2e.ProxylessClient(t, srv.GRPCAddr, grpcNode, kubeNS, echoTarget)

	createInventory(t, e, "10.8.0.5", "10.8.0.6")
	createEcho(t, e, first)
	got := side.waitState(t, "the sidecar to get inventory and echo", 20*time.Second, hasEcho(first, "10.8.0.5:8080", "10.8.0.6:8080"))
	// The sidecar is known by its Pod (IP, labels): it serves inventory.
	if !slices.ContainsFunc(got.clusters, func(c string) bool { return strings.HasPrefix(c, "inbound|8080|") }) {
		t.Errorf("the pod sidecar has no inbound cluster for inventory's port 8080: %v", got.clusters)
	}
	reaches(t, "RPCs to reach the first backend", cc, backendServing)

	patchEcho(t, e, second, 0)
	slice, err := e.Kube.DiscoveryV1().EndpointSlices(kubeNS).Get(t.Context(), "inventory-abcde", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	slice.Endpoints = slice.Endpoints[:1]
	if _, err := e.Kube.DiscoveryV1().EndpointSlices(kubeNS).Update(t.Context(), slice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	side.waitState(t, "the sidecar to follow the updates", 20*time.Second, hasEcho(second, "10.8.0.5:8080"))
	reaches(t, "RPCs to move to the second backend", cc, backendNotServing)

	deleteAll(t, e)
	side.waitState(t, "the sidecar to lose both clusters", 20*time.Second, func(s adsState) bool {
		return !slices.Contains(s.clusters, invCluster) && !slices.Contains(s.clusters, echoCluster)
	})
	e2e.Eventually(t, "RPCs to fail after the entry is deleted", 20*time.Second, func() bool {
		_, err := e2e.Which(cc)
		return err != nil
	})

	// The same entry created through networking.istio.io/v1beta1.
	createEchoV1beta1(t, e, first)
	side.waitState(t, "the sidecar to get the v1beta1 entry", 20*time.Second, func(s adsState) bool {
		return slices.Contains(s.clusters, echoCluster) && slices.Equal(s.endpoints[echoCluster], loopbackAddr(first))
	})
	reaches(t, "RPCs to reach the backend of the v1beta1 entry", cc, backendServing)
}

func deleteAll(t *testing.T, e *kubetest.Env) {
	t.Helper()
	ctx := t.Context()
	if err := e.Istio.NetworkingV1().ServiceEntries(kubeNS).Delete(ctx, "echo", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.Kube.CoreV1().Services(kubeNS).Delete(ctx, "inventory", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.Kube.DiscoveryV1().EndpointSlices(kubeNS).Delete(ctx, "inventory-abcde", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}

// ServiceEntries the API server accepts but that cannot be used get a
// Warning Event naming the problem, and no proxy's other config changes.
func TestKubeInvalidServiceEntry(t *testing.T) {
	backend := e2e.HealthBackend(t, backendServing)
	e, srv := kubeServe(t)
	side, _, cc := echoReady(t, e, srv, backend, "RPCs to reach the backend")
	before := side.state()

	bad := []struct {
		name, field string
		mutate      func(*networkingapi.ServiceEntry)
	}{
		{"no-endpoints", "endpoints", func(s *networkingapi.ServiceEntry) { s.Endpoints = nil }},
		{"bad-address", "address", func(s *networkingapi.ServiceEntry) { s.Endpoints[0].Address = "not-an-ip" }},
	}
	for _, b := range bad {
		se := &networkingv1.ServiceEntry{ObjectMeta: metav1.ObjectMeta{Namespace: kubeNS, Name: b.name},
			Spec: echoSpec(b.name+".test.svc.cluster.local", backend, 0)}
		b.mutate(&se.Spec)
		if _, err := e.Istio.NetworkingV1().ServiceEntries(kubeNS).Create(t.Context(), se, metav1.CreateOptions{}); err != nil {
			t.Fatalf("the API server refused ServiceEntry %s: %v", b.name, err)
		}
	}
	for _, b := range bad {
		msg := waitWarning(t, e, "ServiceEntry", b.name)
		if !strings.Contains(msg, b.field) {
			t.Errorf("Event on %s says %q; want it to name the field %s", b.name, msg, b.field)
		}
	}
	time.Sleep(time.Second) // longer than the debounce's longest wait (500ms)
	after := side.state()
	for _, typ := range []string{resourcev3.ClusterType, resourcev3.EndpointType} {
		if after.versions[typ] != before.versions[typ] || after.responses[typ] != before.responses[typ] {
			t.Errorf("%s changed for the sidecar: version %s -> %s, responses %d -> %d", typ,
				before.versions[typ], after.versions[typ], before.responses[typ], after.responses[typ])
		}
	}
	if got, err := e2e.Which(cc); err != nil || got != backendServing {
		t.Errorf("RPC after the bad entries: %v, %v", got, err)
	}
	// The stream is live: a valid change still arrives.
	patchEcho(t, e, backend, 7)
	side.waitState(t, "a valid change after the bad entries", 20*time.Second, func(s adsState) bool {
		return slices.Equal(s.weights[echoCluster], []uint32{7})
	})
}

// waitWarning waits for a Warning Event on the object and returns its message.
func waitWarning(t *testing.T, e *kubetest.Env, kind, name string) string {
	t.Helper()
	var msg string
	e2e.Eventually(t, "a Warning Event on "+kind+" "+name, 20*time.Second, func() bool {
		list, err := e.Kube.CoreV1().Events(kubeNS).List(t.Context(), metav1.ListOptions{
			FieldSelector: "involvedObject.kind=" + kind + ",involvedObject.name=" + name})
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range list.Items {
			if ev.Type == "Warning" {
				msg = ev.Reason + ": " + ev.Message
				return true
			}
		}
		return false
	})
	t.Logf("Event on %s %s: %s", kind, name, msg)
	return msg
}

// While the API server is down for 30 s the last known config is served,
// also to proxies that connect meanwhile; after it returns, a change reaches
// every proxy.
func TestKubeAPIServerOutage(t *testing.T) {
	first, second := e2e.HealthBackend(t, backendServing), e2e.HealthBackend(t, backendNotServing)
	e, srv := kubeServe(t)
	side, before, cc := echoReady(t, e, srv, first, "RPCs to reach the first backend")

	if err := e.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	time.Sleep(5 * time.Second) // the informers' watches have broken by then
	late := watchADS(t, srv.GRPCAddr, sidecar2Node)
	// The last known state: a stopping kube-apiserver removes its own
	// endpoint from the kubernetes Service, the rest is as before.
	known := side.state()
	if !hasEcho(first, "10.8.0.5:8080", "10.8.0.6:8080")(known) || !slices.Equal(known.clusters, before.clusters) {
		t.Errorf("the connected sidecar lost config in the outage: clusters %v, endpoints %v; before %v, %v",
			known.clusters, known.endpoints, before.clusters, before.endpoints)
	}
	late.waitState(t, fmt.Sprintf("a sidecar connecting during the outage to get the clusters %v and endpoints %v last known", known.clusters, known.endpoints),
		20*time.Second, func(s adsState) bool {
			return slices.Equal(s.clusters, known.clusters) && maps.EqualFunc(s.endpoints, known.endpoints, slices.Equal)
		})
	cc2 := e2e.ProxylessClient(t, srv.GRPCAddr, grpcNodeOther, kubeNS, echoTarget)
	reaches(t, "RPCs of a grpc-go client connecting during the outage", cc2, backendServing)
	if code := readyzCode(t, srv.HTTPAddr); code != http.StatusOK {
		t.Errorf("/readyz during the outage: %d", code)
	}
	time.Sleep(time.Until(down.Add(30 * time.Second)))
	if s := side.state(); s.versions[resourcev3.ClusterType] != before.versions[resourcev3.ClusterType] {
		t.Errorf("clusters changed during the outage: version %s -> %s", before.versions[resourcev3.ClusterType], s.versions[resourcev3.ClusterType])
	}
	if err := e.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	t.Logf("API server was down for %s", time.Since(down).Round(time.Millisecond))
	up := time.Now()
	patchEcho(t, e, second, 0)
	for _, w := range []*adsWatcher{side, late} {
		w.waitState(t, "the change after the restart to reach the sidecars", 60*time.Second, hasEcho(second, "10.8.0.5:8080", "10.8.0.6:8080"))
	}
	sidecars := time.Since(up)
	reaches(t, "the first client's RPCs to move to the second backend", cc, backendNotServing)
	reaches(t, "the second client's RPCs to move to the second backend", cc2, backendNotServing)
	t.Logf("recovery: a change made right after the restart reached the sidecars %s and both grpc-go clients %s after the API server was back",
		sidecars.Round(time.Millisecond), time.Since(up).Round(time.Millisecond))
}

func readyzCode(t *testing.T, addr string) int {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// 100 ServiceEntry updates in a burst give a handful of pushes per proxy,
// and the proxies end with the last update.
func TestKubeBurstIsDebounced(t *testing.T) {
	backend := e2e.HealthBackend(t, backendServing)
	e, srv := kubeServe(t)
	side, _, cc := echoReady(t, e, srv, backend, "RPCs to reach the backend")
	time.Sleep(time.Second) // let every proxy settle
	const proxies = 2
	before := side.state()
	pushes := func() (cds, eds float64) {
		return e2e.Metric(t, srv.HTTPAddr, `controlplane_xds_pushes_total{type="cds"}`), e2e.Metric(t, srv.HTTPAddr, `controlplane_xds_pushes_total{type="eds"}`)
	}
	cds0, eds0 := pushes()
	builds0 := e2e.Metric(t, srv.HTTPAddr, "controlplane_snapshot_builds_total")

	begin := time.Now()
	for w := uint32(1); w <= 100; w++ {
		patchEcho(t, e, backend, w)
	}
	burst := time.Since(begin)
	side.waitState(t, "the last update to reach the sidecar", 20*time.Second, func(s adsState) bool {
		return slices.Equal(s.weights[echoCluster], []uint32{100})
	})
	converged := time.Since(begin)
	time.Sleep(2 * time.Second) // pushes still queued would show by now
	after := side.state()
	cds1, eds1 := pushes()
	edsResp := after.responses[resourcev3.EndpointType] - before.responses[resourcev3.EndpointType]
	cdsResp := after.responses[resourcev3.ClusterType] - before.responses[resourcev3.ClusterType]
	t.Logf("100 updates took %s, the sidecar had the last %s after the first; sidecar got %d EDS and %d CDS responses; "+
		"server pushed %v EDS and %v CDS to %d proxies, %v snapshot builds", burst.Round(time.Millisecond), converged.Round(time.Millisecond),
		edsResp, cdsResp, eds1-eds0, cds1-cds0, proxies, e2e.Metric(t, srv.HTTPAddr, "controlplane_snapshot_builds_total")-builds0)
	// The server waits for a quiet period but never longer than 500ms
	// (server.Config.MaxDebounce) after the first change, so a burst the
	// API server spreads over more than ~2s (a loaded machine) may take a
	// push per 500ms.
	handful := max(5, 1+int(math.Ceil(burst.Seconds()/0.5)))
	if edsResp < 1 || edsResp > handful || cdsResp > handful {
		t.Errorf("the sidecar got %d EDS and %d CDS responses for the burst; want 1..%d EDS, at most %d CDS", edsResp, cdsResp, handful, handful)
	}
	if eds1-eds0 > float64(handful*proxies) || cds1-cds0 > float64(handful*proxies) {
		t.Errorf("server pushed %v EDS and %v CDS for the burst to %d proxies; want at most %d per proxy", eds1-eds0, cds1-cds0, proxies, handful)
	}
	if !slices.Equal(after.weights[echoCluster], []uint32{100}) || !slices.Equal(after.endpoints[echoCluster], loopbackAddr(backend)) {
		t.Errorf("final echo endpoints %v weights %v; want %v weight 100", after.endpoints[echoCluster], after.weights[echoCluster], loopbackAddr(backend))
	}
	if got, err := e2e.Which(cc); err != nil || got != backendServing {
		t.Errorf("RPC after the burst: %v, %v", got, err)
	}
}
