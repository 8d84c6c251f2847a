package snapshot

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"

	"github.com/librarymesh/controlplane/meshname"
	"github.com/librarymesh/controlplane/registry"
)

// withNewService is scenario S's view plus a service on port 9999 whose
// endpoints are the given addresses.
func withNewService(v *indexedView, name string, addrs ...string) (*indexedView, string) {
	tv := *v.testView
	host := name + ".default.svc.cluster.local"
	tv.services = append(slices.Clone(tv.services), &registry.Service{Hostname: host, Namespace: "default", Name: name,
		Addresses: []string{"10.97.0.1"}, Ports: []registry.Port{{Name: "p", Number: 9999, Protocol: registry.ProtocolHTTP}},
		ServiceAccounts: []string{meshname.SPIFFEID("cluster.local", "default", "sa")}})
	tv.endpoints = slices.Clone(tv.endpoints)
	for _, a := range addrs {
		tv.endpoints = append(tv.endpoints, &registry.Endpoint{Hostname: host, Namespace: "default", Address: a, Ready: true})
	}
	next := newIndexedView(&tv)
	for h, eps := range v.byHost { // the registry keeps an unchanged host's list
		if h != host {
			next.byHost[h] = eps
		}
	}
	return next, host
}

func sameResources(a, b []types.Resource) bool {
	return slices.EqualFunc(a, b, func(x, y types.Resource) bool { return proto.Equal(x, y) })
}

// TestWithServiceChanges: after a new service, a Builder carried over
// gives every proxy what a fresh one gives, keeping the own part (the same
// protos) of the proxies the service does not reach and building again
// that of a proxy that is one of its endpoints.
func TestWithServiceChanges(t *testing.T) {
	v, proxies := scenarioS()
	prev := NewBuilder(v, Options{})
	owns := map[*Proxy]*Resources{}
	for _, p := range proxies {
		_, own, err := prev.BuildParts(p)
		if err != nil {
			t.Fatal(err)
		}
		owns[p] = own
	}
	reached := proxies[0] // a pod of svc-0 becomes an endpoint of the new service
	for _, tc := range []struct {
		name  string
		addrs []string
	}{
		{name: "reaches none"},
		{name: "reaches a pod", addrs: reached.IPs},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v2, host := withNewService(v, "new-svc", tc.addrs...)
			next := prev.WithServiceChanges(v2, Options{}, []string{host})
			fresh := NewBuilder(v2, Options{})
			kept := 0
			for i, p := range proxies {
				shared, own, err := next.BuildParts(p)
				if err != nil {
					t.Fatal(err)
				}
				if own != nil && own == owns[p] {
					kept++
				}
				if i%25 != 0 && p != reached {
					continue // compared with a fresh build: a sample, and the proxy reached
				}
				wantShared, wantOwn, err := fresh.BuildParts(p)
				if err != nil {
					t.Fatal(err)
				}
				if (own == nil) != (wantOwn == nil) || own != nil && (!sameResources(own.Listeners, wantOwn.Listeners) ||
					!sameResources(own.Clusters, wantOwn.Clusters) || !sameResources(own.Endpoints, wantOwn.Endpoints)) {
					t.Fatalf("proxy %s: the own part differs from a fresh build", p.ID)
				}
				if !sameResources(shared.Clusters, wantShared.Clusters) || !sameResources(shared.Listeners, wantShared.Listeners) {
					t.Fatalf("proxy %s: the shared part differs from a fresh build", p.ID)
				}
				if p == reached && tc.addrs != nil && own == owns[p] {
					t.Errorf("proxy %s is an endpoint of the new service, yet kept its old own part", p.ID)
				}
			}
			if withOwn := countOwn(owns); kept != withOwn-len(tc.addrs) {
				t.Errorf("%d proxies kept their own part, want %d (of %d with one)", kept, withOwn-len(tc.addrs), withOwn)
			}
		})
	}
	t.Run("options differ", func(t *testing.T) {
		v2, host := withNewService(v, "new-svc")
		next := prev.WithServiceChanges(v2, Options{TrustBundle: "other"}, []string{host})
		if _, own, _ := next.BuildParts(proxies[1]); own == owns[proxies[1]] {
			t.Error("an own part built with other options was kept")
		}
	})
}

func countOwn(owns map[*Proxy]*Resources) int {
	n := 0
	for _, o := range owns {
		if o != nil {
			n++
		}
	}
	return n
}

// BenchmarkNewServiceScenarioS builds every proxy of scenario S after a
// new service: from a fresh Builder, or carried over (own parts kept).
func BenchmarkNewServiceScenarioS(b *testing.B) {
	v, proxies := scenarioS()
	prev := NewBuilder(v, Options{})
	for _, p := range proxies {
		if _, err := prev.Build(p); err != nil {
			b.Fatal(err)
		}
	}
	for _, carried := range []bool{false, true} {
		b.Run(fmt.Sprintf("carried=%v", carried), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				v2, host := withNewService(v, fmt.Sprintf("new-%d", i))
				next := NewBuilder(v2, Options{})
				if carried {
					next = prev.WithServiceChanges(v2, Options{}, []string{host})
				}
				for _, p := range proxies {
					if _, _, err := next.BuildParts(p); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// withEndpoints is v with a new endpoint list for host.
func withEndpoints(v *indexedView, host string, addrs ...string) *indexedView {
	next := *v
	next.byHost = maps.Clone(v.byHost)
	var eps []*registry.Endpoint
	for _, a := range addrs {
		eps = append(eps, &registry.Endpoint{Hostname: host, Namespace: "default", Address: a, Ready: true})
	}
	next.byHost[host] = eps
	return &next
}

// TestWithServiceChangesKeepsClusters: a Builder carried over after a
// service change gives a proxy what a fresh one gives, reusing the cluster
// and assignment protos of the hosts the change left alone and building
// those of the changed hosts again, including a host whose endpoints
// changed though the caller did not name it.
func TestWithServiceChangesKeepsClusters(t *testing.T) {
	v, proxies := scenarioS()
	p := proxies[0]
	prev := NewBuilder(v, Options{})
	before, _, err := prev.BuildParts(p)
	if err != nil {
		t.Fatal(err)
	}
	const named, unnamed = "svc-2.default.svc.cluster.local", "svc-1.default.svc.cluster.local"
	v2, host := withNewService(v, "new-svc", "10.99.0.1")
	v2 = withEndpoints(withEndpoints(v2, named, "10.99.2.1"), unnamed, "10.99.1.1")
	next := prev.WithServiceChanges(v2, Options{}, []string{host, named})
	after, _, err := next.BuildParts(p)
	if err != nil {
		t.Fatal(err)
	}
	fresh, _, err := NewBuilder(v2, Options{}).BuildParts(p)
	if err != nil {
		t.Fatal(err)
	}
	if !sameResources(after.Clusters, fresh.Clusters) || !sameResources(after.Endpoints, fresh.Endpoints) {
		t.Fatal("clusters or endpoints differ from a fresh build")
	}
	old := map[string]types.Resource{}
	for _, r := range append(slices.Clone(before.Clusters), before.Endpoints...) {
		old[fmt.Sprintf("%T %s", r, cachev3.GetResourceName(r))] = r
	}
	changed := []string{host, named, unnamed}
	kept := 0
	for _, r := range append(slices.Clone(after.Clusters), after.Endpoints...) {
		name := cachev3.GetResourceName(r)
		if !strings.HasPrefix(name, "outbound|") {
			continue
		}
		same := old[fmt.Sprintf("%T %s", r, name)] == r
		isChanged := slices.ContainsFunc(changed, func(h string) bool { return strings.HasSuffix(name, "|"+h) })
		switch {
		case isChanged && same:
			t.Errorf("%T %s of a changed host was carried over", r, name)
		case !isChanged && !same:
			t.Errorf("%T %s of an unchanged host was built again", r, name)
		case same:
			kept++
		}
	}
	if kept < 1000 {
		t.Errorf("%d clusters and assignments carried over, want at least 1000", kept)
	}
}
