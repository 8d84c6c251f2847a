package snapshot

import (
	"slices"
	"strings"
	"sync"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/librarymesh/controlplane/meshname"
	"github.com/librarymesh/controlplane/registry"
)

const (
	podNodeID  = "sidecar~10.8.0.5~inventory-abc.default~default.svc.cluster.local"
	vmNodeID   = "sidecar~10.128.0.14~postgres-1-vm.default~default.svc.cluster.local"
	grpcNodeID = "sidecar~10.8.0.5~inventory-abc.default~default.svc.cluster.local"
)

func mustProxy(t testing.TB, id string, md map[string]any) *Proxy {
	t.Helper()
	return mustProxyIn(t, id, md, "")
}

// mustProxyIn is mustProxy for a node in a locality (region/zone/subzone).
func mustProxyIn(t testing.TB, id string, md map[string]any, locality string) *Proxy {
	t.Helper()
	s, err := structpb.NewStruct(md)
	if err != nil {
		t.Fatal(err)
	}
	node := &corev3.Node{Id: id, Metadata: s}
	if locality != "" {
		node.Locality = Locality(locality)
	}
	p, err := ParseProxy(node)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func names(rs []types.Resource) []string {
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		out = append(out, cachev3.GetResourceName(r))
	}
	return out
}

func find[T types.Resource](t testing.TB, rs []types.Resource, name string) T {
	t.Helper()
	for _, r := range rs {
		if cachev3.GetResourceName(r) == name {
			return r.(T)
		}
	}
	t.Fatalf("no resource %q in %v", name, names(rs))
	var zero T
	return zero
}

func TestClassify(t *testing.T) {
	b := NewBuilder(libraryView(nil, nil), Options{})
	tests := []struct {
		name string
		id   string
		md   map[string]any
		want Kind
	}{
		{"known pod", podNodeID, nil, PodSidecar},
		{"unknown pod", "sidecar~10.9.9.9~x.default~default.svc.cluster.local", nil, PodSidecar},
		{"VM from ServiceEntry endpoint", vmNodeID, nil, VMSidecar},
		{"VM by INSTANCE_IPS", "sidecar~192.168.1.1~vm.default~default.svc.cluster.local", map[string]any{"INSTANCE_IPS": "192.168.1.1,10.128.0.14"}, VMSidecar},
		{"proxyless gRPC", grpcNodeID, map[string]any{"GENERATOR": "grpc"}, ProxylessGRPC},
		{"group VM not registered yet", "sidecar~10.9.9.8~vm-a.default~default.svc.cluster.local",
			map[string]any{"AUTO_REGISTER_GROUP": "pg", "INTERCEPTION_MODE": "NONE"}, VMSidecar},
		{"group VM on a pod's IP", podNodeID, map[string]any{"AUTO_REGISTER_GROUP": "pg"}, PodSidecar},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := b.Classify(mustProxy(t, tt.id, tt.md)); got != tt.want {
				t.Errorf("Classify = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestBuildSharesOutboundParts(t *testing.T) {
	b := NewBuilder(libraryView(meshStrict(), localMutual()), Options{})
	pod, err := b.Build(mustProxy(t, podNodeID, nil))
	if err != nil {
		t.Fatal(err)
	}
	other, err := b.Build(mustProxy(t, "sidecar~10.8.0.99~other-xyz.default~default.svc.cluster.local", nil))
	if err != nil {
		t.Fatal(err)
	}
	vm, err := b.Build(mustProxy(t, vmNodeID, nil))
	if err != nil {
		t.Fatal(err)
	}
	name := meshname.OutboundCluster(5432, "", "postgres-1-vm.default.svc.cluster.local")
	c1 := find[*clusterv3.Cluster](t, pod.Clusters, name)
	if c2 := find[*clusterv3.Cluster](t, other.Clusters, name); c1 != c2 {
		t.Error("two pod sidecars in one namespace got different cluster protos")
	}
	if c3 := find[*clusterv3.Cluster](t, vm.Clusters, name); c1 != c3 {
		t.Error("pod and VM sidecar in one namespace got different cluster protos")
	}
	if len(other.Listeners) >= len(pod.Listeners) {
		t.Errorf("unknown pod has %d listeners, known pod %d: want virtualInbound only for the known pod", len(other.Listeners), len(pod.Listeners))
	}
}

func TestBuildConcurrent(t *testing.T) {
	b := NewBuilder(libraryView(meshStrict(), localMutual()), Options{})
	ids := []string{podNodeID, vmNodeID, "sidecar~10.8.0.7~a.other~other.svc.cluster.local"}
	var wg sync.WaitGroup
	results := make([]*Resources, 3*len(ids))
	errs := make([]error, len(results))
	for i := range results {
		p := mustProxy(t, ids[i%len(ids)], nil)
		wg.Go(func() { results[i], errs[i] = b.Build(p) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("build %d: %v", i, err)
		}
		name := meshname.OutboundCluster(5432, "", "postgres-1-vm.default.svc.cluster.local")
		want := find[*clusterv3.Cluster](t, results[i%len(ids)].Clusters, name)
		if got := find[*clusterv3.Cluster](t, results[i].Clusters, name); got != want {
			t.Errorf("build %d: cluster %s not shared", i, name)
		}
	}
}

func TestBuildListsSortedAndValid(t *testing.T) {
	policies := map[string][]*registry.PeerAuthentication{
		"none": nil, "strict": meshStrict(),
		"permissive": {{Namespace: "istio-system", Name: "default", Mode: registry.MTLSPermissive}},
		"disable":    {{Namespace: "default", Name: "default", Mode: registry.MTLSDisable}},
	}
	proxies := []struct {
		id string
		md map[string]any
	}{{podNodeID, nil}, {vmNodeID, nil}, {grpcNodeID, map[string]any{"GENERATOR": "grpc"}}}
	for pname, pas := range policies {
		b := NewBuilder(libraryView(pas, localMutual()), Options{})
		for _, p := range proxies {
			id := p.id
			res, err := b.Build(mustProxy(t, id, p.md))
			if err != nil {
				t.Fatalf("%s %s: %v", pname, id, err)
			}
			for _, l := range res.lists() {
				ns := names(*l)
				for i := 1; i < len(ns); i++ {
					if ns[i-1] >= ns[i] {
						t.Errorf("%s %s: not sorted or duplicate: %q then %q", pname, id, ns[i-1], ns[i])
					}
				}
				for _, r := range *l {
					if err := r.(validator).ValidateAll(); err != nil {
						t.Errorf("%s %s: %v", pname, id, err)
					}
				}
			}
		}
	}
}

func TestVMInboundListener(t *testing.T) {
	tests := []struct {
		name       string
		pas        []*registry.PeerAuthentication
		wantChains int
		wantTLS    []bool
	}{
		{"strict", meshStrict(), 1, []bool{true}},
		{"permissive", nil, 2, []bool{true, false}},
		{"disable", []*registry.PeerAuthentication{{Namespace: "default", Name: "pg", Selector: map[string]string{"app": "postgres"}, Mode: registry.MTLSDisable}}, 1, []bool{false}},
		{"port override", []*registry.PeerAuthentication{
			{Namespace: "istio-system", Name: "default", Mode: registry.MTLSStrict},
			{Namespace: "default", Name: "pg", Selector: map[string]string{"app": "postgres"}, PortModes: map[uint32]registry.MTLSMode{5432: registry.MTLSDisable}},
		}, 1, []bool{false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBuilder(libraryView(tt.pas, nil), Options{AccessLogPath: "/tmp/x.log"})
			res, err := b.Build(mustProxy(t, vmNodeID, nil))
			if err != nil {
				t.Fatal(err)
			}
			name := meshname.InboundListener(5432, "tcp", "postgres-1-vm.default.svc.cluster.local")
			l := find[*listenerv3.Listener](t, res.Listeners, name)
			if got := l.GetAddress().GetSocketAddress(); got.GetAddress() != "10.128.0.14" || got.GetPortValue() != 5432 {
				t.Errorf("address = %v, want 10.128.0.14:5432", got)
			}
			if len(l.GetFilterChains()) != tt.wantChains {
				t.Fatalf("filter chains = %d, want %d", len(l.GetFilterChains()), tt.wantChains)
			}
			for i, fc := range l.GetFilterChains() {
				if got := fc.GetTransportSocket() != nil; got != tt.wantTLS[i] {
					t.Errorf("chain %d TLS = %v, want %v", i, got, tt.wantTLS[i])
				}
			}
			c := find[*clusterv3.Cluster](t, res.Clusters, name)
			ep := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
			if ep.GetAddress() != "127.0.0.1" || ep.GetPortValue() != 5432 {
				t.Errorf("inbound cluster endpoint = %v, want 127.0.0.1:5432", ep)
			}
		})
	}
}

func TestInvalidResourceLeftOut(t *testing.T) {
	v := libraryView(nil, nil)
	v.endpoints = append(v.endpoints, &registry.Endpoint{Hostname: "postgres-1-vm.default.svc.cluster.local", Address: "", Ready: true})
	b := NewBuilder(v, Options{})
	for range 2 {
		res, err := b.Build(mustProxy(t, podNodeID, nil))
		if err != nil {
			t.Fatal(err)
		}
		bad := meshname.OutboundCluster(5432, "", "postgres-1-vm.default.svc.cluster.local")
		if slices.Contains(names(res.Endpoints), bad) {
			t.Errorf("invalid assignment %s was sent", bad)
		}
		find[*clusterv3.Cluster](t, res.Clusters, meshname.OutboundCluster(8080, "", "inventory.default.svc.cluster.local"))
	}
	if ps := b.Problems(); len(ps) != 1 || !strings.Contains(ps[0].Error(), "postgres-1-vm") {
		t.Errorf("Problems() = %v, want one naming postgres-1-vm", ps)
	}
}

func TestGRPCServerListenerAddresses(t *testing.T) {
	b := NewBuilder(libraryView(nil, nil), Options{})
	res, err := b.Build(mustProxy(t, grpcNodeID, map[string]any{"GENERATOR": "grpc"}))
	if err != nil {
		t.Fatal(err)
	}
	// grpc-go accepts a server Listener only if its address is the listening address.
	for _, addr := range []string{"10.8.0.5", "0.0.0.0", "::"} {
		for _, name := range []string{meshname.GRPCServerListener(addr, 8080), meshname.IstioGRPCServerListener(addr, 8080)} {
			l := find[*listenerv3.Listener](t, res.Listeners, name)
			if got := l.GetAddress().GetSocketAddress(); got.GetAddress() != addr || got.GetPortValue() != 8080 {
				t.Errorf("%s: address %v", l.GetName(), got)
			}
		}
	}
}

// TestPodsShareInboundPieces: two pods of one service get their own
// virtual inbound listener and inbound cluster, but what is alike in them
// (the catch-all chains, the listener's address, the 127.0.0.1 endpoint,
// the port chains' matches) is one proto between them: a pod's own part
// stays in memory for as long as it is connected.
func TestPodsShareInboundPieces(t *testing.T) {
	v := libraryView(nil, nil)
	v.workloads = append(v.workloads, &registry.Workload{Kind: "Pod", Namespace: "default", Name: "inventory-def", Address: "10.8.0.6",
		ServiceAccount: "inventory", Labels: map[string]string{"app": "inventory"}})
	b := NewBuilder(v, Options{})
	var listeners []*listenerv3.Listener
	var clusters []*clusterv3.Cluster
	for _, id := range []string{podNodeID, "sidecar~10.8.0.6~inventory-def.default~default.svc.cluster.local"} {
		r, err := b.Build(mustProxy(t, id, nil))
		if err != nil {
			t.Fatal(err)
		}
		listeners = append(listeners, find[*listenerv3.Listener](t, r.Listeners, meshname.VirtualInboundListener))
		for _, c := range r.Clusters {
			if strings.HasPrefix(cachev3.GetResourceName(c), "inbound|") {
				clusters = append(clusters, c.(*clusterv3.Cluster))
				break
			}
		}
	}
	if len(clusters) != 2 {
		t.Fatalf("%d inbound clusters, want one a pod", len(clusters))
	}
	a, c := listeners[0], listeners[1]
	if a == c || clusters[0] == clusters[1] {
		t.Fatal("two pods got the same own listener or cluster: each needs its own")
	}
	if a.GetAddress() != c.GetAddress() || a.GetUseOriginalDst() != c.GetUseOriginalDst() {
		t.Error("the pods' virtual inbound listeners have an address or use_original_dst each")
	}
	chains := a.GetFilterChains()
	if len(chains) != len(c.GetFilterChains()) || len(chains) < 3 {
		t.Fatalf("filter chains: %d and %d", len(chains), len(c.GetFilterChains()))
	}
	for i, ch := range chains {
		other := c.GetFilterChains()[i]
		switch {
		case strings.HasPrefix(ch.GetName(), meshname.VirtualInboundCatchAllChain(false)), strings.HasPrefix(ch.GetName(), meshname.VirtualInboundCatchAllChain(true)):
			if ch != other {
				t.Errorf("chain %s: one a pod, want one between them", ch.GetName())
			}
		case ch.GetFilterChainMatch().GetDestinationPort() != nil && ch.GetFilterChainMatch() != other.GetFilterChainMatch():
			t.Errorf("chain %s: a match each, want one between them", ch.GetName())
		}
	}
	e0, e1 := clusters[0].GetLoadAssignment().GetEndpoints(), clusters[1].GetLoadAssignment().GetEndpoints()
	if len(e0) != 1 || len(e1) != 1 || e0[0] != e1[0] {
		t.Error("the pods' inbound clusters have a 127.0.0.1 endpoint each")
	}
}
