package server

import (
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	networkingapi "istio.io/api/networking/v1"
)

// TestProxyKindFollowsTheModel: a sidecar whose address no workload has is
// a pod's; once a ServiceEntry lists its address as a VM endpoint, the
// rebuild that change causes makes it a VM's (the status and the
// connected-proxies gauge say so), and removing the endpoint makes it a
// pod's again.
func TestProxyKindFollowsTheModel(t *testing.T) {
	s, store := startLibrary(t)
	const id = "sidecar~10.40.9.9~reporting-1.default~default.svc.cluster.local"
	st, rx := deltaStream(t, s)
	if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node(id), TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatal(err)
	}
	if _, err := rx.next(5 * time.Second); err != nil {
		t.Fatalf("no CDS response: %v", err)
	}
	kindIs := func(want string) {
		t.Helper()
		waitFor(t, "the proxy's kind "+want, func() bool {
			cs := s.Connections()
			return len(cs) == 1 && cs[0].Kind == want &&
				value(t, s.metrics.proxies.WithLabelValues(want)) == 1
		})
		for _, other := range []string{"pod-sidecar", "vm-sidecar"} {
			if n := value(t, s.metrics.proxies.WithLabelValues(other)); other != want && n != 0 {
				t.Errorf("connected proxies of kind %s: %v, want 0", other, n)
			}
		}
	}
	kindIs("pod-sidecar")

	se := httpEntry("reporting")
	se.Spec.Endpoints = []*networkingapi.WorkloadEntry{{Address: "10.40.9.9"}}
	if ps := store.Upsert("test", se); len(ps) > 0 {
		t.Fatalf("upsert: %v", ps)
	}
	kindIs("vm-sidecar")

	se.Spec.Endpoints = []*networkingapi.WorkloadEntry{{Address: "10.40.9.10"}}
	if ps := store.Upsert("test", se); len(ps) > 0 {
		t.Fatalf("upsert: %v", ps)
	}
	kindIs("pod-sidecar")
}
