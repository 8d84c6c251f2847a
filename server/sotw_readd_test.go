package server

import (
	"fmt"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// TestSotWEndpointsResentAfterReAdd: a SotW proxy that drops a cluster's
// endpoints from its EDS subscription and names them again later (the
// cluster went and came back) gets the ClusterLoadAssignment again, in
// the response to the request that names it, even though its content did
// not change meanwhile: the proxy dropped it when it stopped naming it.
func TestSotWEndpointsResentAfterReAdd(t *testing.T) {
	w := defaultWorld()
	real := fmt.Sprintf("outbound|%d||%s", w.port, w.host)
	other := "outbound|9||none.default.svc.cluster.local"
	s := startServer(t, newFakeRegistry(w))
	st, rx := sotwStream(t, s)
	send := func(names []string, nonce string) {
		t.Helper()
		if err := st.Send(&discoveryv3.DiscoveryRequest{Node: node(podNodeID), TypeUrl: resourcev3.EndpointType, ResourceNames: names, ResponseNonce: nonce}); err != nil {
			t.Fatal(err)
		}
	}
	response := func(what string, want int) string {
		t.Helper()
		resp, err := rx.next(5 * time.Second)
		if err != nil {
			t.Fatalf("%s: no EDS response: %v", what, err)
		}
		if got := len(resp.GetResources()); got != want {
			t.Fatalf("%s: EDS response of %d resources, want %d", what, got, want)
		}
		return resp.GetNonce()
	}
	send([]string{real, other}, "")
	nonce := response("first request", 1)
	send([]string{real, other}, nonce) // ACK
	send([]string{other}, nonce)       // the cluster is gone
	if n := rx.count(300 * time.Millisecond); n > 1 {
		t.Fatalf("dropping a name: %d responses", n)
	}
	send([]string{other, real}, nonce) // and back
	for {
		resp, err := rx.next(5 * time.Second)
		if err != nil {
			t.Fatalf("re-adding %s: no EDS response carrying it: %v", real, err)
		}
		if len(resp.GetResources()) == 1 {
			return
		}
		nonce = resp.GetNonce()
		send([]string{other, real}, nonce)
	}
}
