package server

import (
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	networkingapi "istio.io/api/networking/v1"
)

// TestPushOverInlineBudgetIsSentWhole: a push a steady stream gets from
// the waker (pushInline) keeps under inlineBudget; one that would send more
// (here 300 new clusters at once, about 100 KB) is left to the stream's
// goroutine and arrives whole, and a small push after it goes out too.
func TestPushOverInlineBudgetIsSentWhole(t *testing.T) {
	s, store := startLibrary(t)
	st, rx := deltaStream(t, s)
	if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node(podNodeID), TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	// answer ACKs each CDS response until cond holds, and returns the
	// bytes they carried.
	answer := func(what string, cond func() bool) int {
		t.Helper()
		size := 0
		for !cond() {
			resp, err := rx.next(5 * time.Second)
			if err != nil {
				t.Fatalf("%s: %v (have %d clusters)", what, err, len(have))
			}
			for _, r := range resp.GetResources() {
				var c clusterv3.Cluster
				if err := r.GetResource().UnmarshalTo(&c); err != nil {
					t.Fatal(err)
				}
				have[c.GetName()] = true
				size += len(r.GetResource().GetValue())
			}
			for _, n := range resp.GetRemovedResources() {
				delete(have, n)
			}
			if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResponseNonce: resp.GetNonce()}); err != nil {
				t.Fatal(err)
			}
		}
		return size
	}
	answer("first CDS", func() bool { return len(have) > 0 })
	before := len(have)

	se := manyHosts(300)
	se.Spec.Endpoints = []*networkingapi.WorkloadEntry{{Address: "10.40.0.7"}}
	if ps := store.Upsert("test", se); len(ps) > 0 {
		t.Fatalf("upsert: %v", ps)
	}
	big := answer("300 new clusters", func() bool { return len(have) >= before+300 })
	if big <= inlineBudget {
		t.Fatalf("300 new clusters came in %d bytes, want over the inline budget (%d) for this test to mean anything", big, inlineBudget)
	}

	small := httpEntry("one-more")
	if ps := store.Upsert("test", small); len(ps) > 0 {
		t.Fatalf("upsert: %v", ps)
	}
	answer("one more cluster", func() bool { return have["outbound|8080||one-more.default.svc.cluster.local"] })
	if n := rx.count(300 * time.Millisecond); n != 0 {
		t.Errorf("%d responses after the last ACK, want none", n)
	}
}
