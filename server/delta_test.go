package server

import (
	"slices"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/librarymesh/controlplane/registry"
)

// TestDeltaSubscriptionChanges follows one delta stream through
// unsubscribing, resubscribing, a removed cluster and a reconnect that
// names the versions it holds.
func TestDeltaSubscriptionChanges(t *testing.T) {
	reg := newFakeRegistry(defaultWorld())
	s := startServer(t, reg)
	st, rx := deltaStream(t, s)
	const cla = "outbound|8080||svc.test"
	send := func(req *discoveryv3.DeltaDiscoveryRequest) {
		t.Helper()
		if err := st.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	recv := func(what string) *discoveryv3.DeltaDiscoveryResponse {
		t.Helper()
		resp, err := rx.next(5 * time.Second)
		if err != nil {
			t.Fatalf("%s: no response: %v", what, err)
		}
		send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()})
		return resp
	}
	names := func(resp *discoveryv3.DeltaDiscoveryResponse) []string {
		var out []string
		for _, r := range resp.GetResources() {
			out = append(out, r.GetName())
		}
		return out
	}

	send(&discoveryv3.DeltaDiscoveryRequest{Node: node(podNodeID), TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: []string{cla}})
	first := recv("subscribe")
	if got := names(first); !slices.Equal(got, []string{cla}) {
		t.Fatalf("subscribe sent %q, want %q", got, cla)
	}
	version := first.GetResources()[0].GetVersion()

	send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNamesUnsubscribe: []string{cla}})
	// The stream takes in its requests in order, so the answer to a later
	// one shows the unsubscribe was taken in before the change is made
	// (a lone change is pushed at once).
	send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType})
	if got := names(recv("wildcard CDS")); !slices.Equal(got, []string{cla}) {
		t.Fatalf("wildcard CDS sent %q, want %q", got, cla)
	}
	w := defaultWorld()
	w.backend = "127.0.0.1:10"
	reg.set(w, registry.Change{Hostnames: []string{w.host}, EndpointsOnly: true})
	if n := rx.count(300 * time.Millisecond); n != 0 {
		t.Fatalf("%d responses after unsubscribing, want none", n)
	}

	send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: []string{cla}})
	again := recv("resubscribe")
	if got := names(again); !slices.Equal(got, []string{cla}) || again.GetResources()[0].GetVersion() == version {
		t.Fatalf("resubscribe sent %q (version %s), want %s with the new endpoints", got, again.GetResources()[0].GetVersion(), cla)
	}
	current := again.GetResources()[0].GetVersion()

	moved := w
	moved.host = "moved.test"
	reg.set(moved, registry.Change{All: true})
	var removed *discoveryv3.DeltaDiscoveryResponse
	for removed == nil {
		if resp := recv("host change"); resp.GetTypeUrl() == resourcev3.ClusterType {
			removed = resp
		}
	}
	if got := names(removed); !slices.Equal(got, []string{"outbound|8080||moved.test"}) || !slices.Equal(removed.GetRemovedResources(), []string{cla}) {
		t.Errorf("host change sent %q and removed %q; want the new cluster and %s removed", got, removed.GetRemovedResources(), cla)
	}

	// A new stream that already holds the current version is sent nothing
	// for it; one holding an old version is sent the current one.
	reg.set(w, registry.Change{All: true})
	for back := false; !back; {
		resp := recv("host back")
		back = resp.GetTypeUrl() == resourcev3.ClusterType && slices.Equal(names(resp), []string{cla})
	}
	for _, tc := range []struct {
		held string
		want int
	}{{current, 0}, {version, 1}} {
		st2, rx2 := deltaStream(t, s)
		if err := st2.Send(&discoveryv3.DeltaDiscoveryRequest{
			Node: node(podNodeID), TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: []string{cla},
			InitialResourceVersions: map[string]string{cla: tc.held},
		}); err != nil {
			t.Fatal(err)
		}
		if n := rx2.count(500 * time.Millisecond); n != tc.want {
			t.Errorf("reconnect holding version %s: %d responses, want %d", tc.held, n, tc.want)
		}
	}
}
