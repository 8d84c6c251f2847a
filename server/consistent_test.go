package server

import (
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/librarymesh/controlplane/registry"
)

// TestInconsistentSnapshotKeepsLastGood: a build whose listener names a
// route configuration it lacks is not set; the proxy keeps what it has,
// the failure is counted and shown, and the next good build goes out.
func TestInconsistentSnapshotKeepsLastGood(t *testing.T) {
	reg := newFakeRegistry(defaultWorld())
	s := startServer(t, reg)
	st, rx := sotwStream(t, s)
	ask := func(resp *discoveryv3.DiscoveryResponse) {
		t.Helper()
		req := &discoveryv3.DiscoveryRequest{Node: node(podNodeID), TypeUrl: resourcev3.ClusterType}
		if resp != nil {
			req = &discoveryv3.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
		}
		if err := st.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	ask(nil)
	first, err := rx.next(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ask(first)

	broken := defaultWorld()
	broken.noRoute, broken.connectTimeout = true, 2*time.Second
	rev := reg.set(broken, registry.Change{All: true})
	waitFor(t, "the broken model pushed", func() bool { _, r := s.Pushes(); return r >= rev })
	if n := rx.count(300 * time.Millisecond); n != 0 {
		t.Fatalf("an inconsistent build sent %d responses, want none", n)
	}
	if got := value(t, s.metrics.buildErrors); got < 1 {
		t.Errorf("snapshot_build_errors_total = %v, want at least 1", got)
	}
	if _, body := get(t, s, "/debug/config_dump?proxyID="+podNodeID); !strings.Contains(body, "inconsistent snapshot") ||
		!strings.Contains(body, `names route configuration`) {
		t.Errorf("config_dump does not show the inconsistency:\n%s", body)
	}

	fixed := defaultWorld()
	fixed.connectTimeout = 2 * time.Second
	reg.set(fixed, registry.Change{All: true})
	resp, err := rx.next(5 * time.Second)
	if err != nil {
		t.Fatalf("no CDS after the model was fixed: %v", err)
	}
	if resp.GetVersionInfo() == first.GetVersionInfo() {
		t.Fatal("the fixed model sent the first version again")
	}
}
