package main

import (
	"cmp"
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/librarymesh/controlplane/internal/e2e"
)

// quiet is how long a stream must stay silent to count as synced.
const quiet = 2 * time.Second

// heldProxy is an Envoy-like proxy that keeps what it holds across
// streams and presents it when it reconnects: SotW the version of each
// type it ACKed, delta each resource's version.
type heldProxy struct {
	delta    bool
	versions map[string]string            // SotW: type -> version
	held     map[string]map[string]string // delta: type -> name -> version
	eds      []string                     // EDS names its clusters need
}

func newHeldProxy(delta bool) *heldProxy {
	return &heldProxy{delta: delta, versions: map[string]string{}, held: map[string]map[string]string{}}
}

// sync connects to addr, presents what p holds, takes in (and ACKs) every
// response until the stream is quiet, and returns the responses by type.
func (p *heldProxy) sync(t *testing.T, addr string) map[string][]int {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(cc)
	if p.delta {
		st, err := ads.DeltaAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return p.syncDelta(t, st)
	}
	st, err := ads.StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return p.syncSotW(t, st)
}

// recvQuiet receives until nothing comes for quiet (nil then).
func recvQuiet[T any](t *testing.T, recv func() (T, error)) (T, bool) {
	t.Helper()
	type result struct {
		m   T
		err error
	}
	c := make(chan result, 1)
	go func() { m, err := recv(); c <- result{m, err} }()
	select {
	case r := <-c:
		if r.err != nil {
			t.Fatalf("stream: %v", r.err)
		}
		return r.m, true
	case <-time.After(quiet):
		var zero T
		return zero, false
	}
}

func (p *heldProxy) syncSotW(t *testing.T, st discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient) map[string][]int {
	t.Helper()
	send := func(r *discoveryv3.DiscoveryRequest) {
		if err := st.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	node := &corev3.Node{Id: podNode}
	send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType, VersionInfo: p.versions[resourcev3.ClusterType]})
	send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ListenerType, VersionInfo: p.versions[resourcev3.ListenerType]})
	if len(p.eds) > 0 {
		send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: p.eds, VersionInfo: p.versions[resourcev3.EndpointType]})
	}
	got := map[string][]int{}
	for {
		resp, ok := recvQuiet(t, st.Recv)
		if !ok {
			return got
		}
		typ := resp.GetTypeUrl()
		got[typ] = append(got[typ], len(resp.GetResources()))
		p.versions[typ] = resp.GetVersionInfo()
		ack := &discoveryv3.DiscoveryRequest{TypeUrl: typ, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
		if typ == resourcev3.EndpointType {
			ack.ResourceNames = p.eds
		}
		send(ack)
		if typ == resourcev3.ClusterType {
			if eds := edsNames(t, resp.GetResources()); !slices.Equal(eds, p.eds) {
				p.eds = eds
				send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: eds, VersionInfo: p.versions[resourcev3.EndpointType]})
			}
		}
	}
}

func (p *heldProxy) syncDelta(t *testing.T, st discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient) map[string][]int {
	t.Helper()
	send := func(r *discoveryv3.DeltaDiscoveryRequest) {
		if err := st.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	node := &corev3.Node{Id: podNode}
	send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType, InitialResourceVersions: p.held[resourcev3.ClusterType]})
	send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ListenerType, InitialResourceVersions: p.held[resourcev3.ListenerType]})
	if len(p.eds) > 0 {
		send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: p.eds, InitialResourceVersions: p.held[resourcev3.EndpointType]})
	}
	got := map[string][]int{}
	for {
		resp, ok := recvQuiet(t, st.Recv)
		if !ok {
			return got
		}
		typ := resp.GetTypeUrl()
		got[typ] = append(got[typ], len(resp.GetResources()))
		if p.held[typ] == nil {
			p.held[typ] = map[string]string{}
		}
		var anys []*discoveryv3.Resource
		for _, r := range resp.GetResources() {
			p.held[typ][r.GetName()] = r.GetVersion()
			anys = append(anys, r)
		}
		for _, n := range resp.GetRemovedResources() {
			delete(p.held[typ], n)
		}
		send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ, ResponseNonce: resp.GetNonce()})
		if typ == resourcev3.ClusterType && len(p.eds) == 0 {
			var cs []*anypb.Any
			for _, r := range anys {
				cs = append(cs, r.GetResource())
			}
			p.eds = edsNames(t, cs)
			send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: p.eds})
		}
	}
}

// edsNames returns the EDS names of the EDS clusters, sorted.
func edsNames(t *testing.T, rs []*anypb.Any) []string {
	t.Helper()
	var out []string
	for _, a := range rs {
		var c clusterv3.Cluster
		if err := proto.Unmarshal(a.GetValue(), &c); err != nil {
			t.Fatal(err)
		}
		if c.GetType() == clusterv3.Cluster_EDS {
			out = append(out, cmp.Or(c.GetEdsClusterConfig().GetServiceName(), c.GetName()))
		}
	}
	slices.Sort(out)
	return out
}

// holds returns a copy of the versions p holds.
func (p *heldProxy) holds() map[string]string {
	if !p.delta {
		return maps.Clone(p.versions)
	}
	out := map[string]string{}
	for typ, m := range p.held {
		for n, v := range m {
			out[typ+" "+n] = v
		}
	}
	return out
}

func total(got map[string][]int) int {
	n := 0
	for _, rs := range got {
		for _, k := range rs {
			n += k
		}
	}
	return n
}

// TestReconnectGetsNothingResent: versions are content hashes, so a
// restarted server and another replica serving the same folder hand a
// proxy the very same versions, and a proxy that reconnects presenting
// them (SotW: the version of each type; delta: initial_resource_versions;
// grpc-go's xDS client: its own way) is sent no resource again. A change
// made afterwards is sent alone.
func TestReconnectGetsNothingResent(t *testing.T) {
	dir := t.TempDir()
	first := e2e.HealthBackend(t, healthpb.HealthCheckResponse_SERVING)
	second := e2e.HealthBackend(t, healthpb.HealthCheckResponse_NOT_SERVING)
	echoFile := filepath.Join(dir, "echo.yaml")
	e2e.WriteFileAtomic(t, echoFile, echoServiceEntry(first))
	e2e.WriteFileAtomic(t, filepath.Join(dir, "inventory.yaml"), readExample(t, "library", "inventory.yaml"))
	// Replicas of one mesh share its CA root (in Kubernetes istio-ca-secret;
	// here one data dir): TLS clusters and filter chains name the trust
	// bundle, so replicas with roots of their own would differ.
	args := []string{"--config-dir", dir, "--debounce", "20ms", "--data-dir", t.TempDir()}
	a, b := e2e.Serve(t, args...), e2e.Serve(t, args...)

	proxies := map[string]*heldProxy{"sotw": newHeldProxy(false), "delta": newHeldProxy(true)}
	for mode, p := range proxies {
		if got := p.sync(t, a.GRPCAddr); total(got) == 0 || len(p.eds) == 0 {
			t.Fatalf("%s: replica A sent %v, EDS names %v", mode, got, p.eds)
		}
		fresh := newHeldProxy(p.delta)
		fresh.sync(t, b.GRPCAddr)
		if !maps.Equal(fresh.holds(), p.holds()) {
			t.Errorf("%s: replica B's versions differ from A's:\nA %v\nB %v", mode, p.holds(), fresh.holds())
		}
		before := p.holds()
		if got := p.sync(t, b.GRPCAddr); total(got) != 0 {
			t.Errorf("%s: moving from replica A to B resent resources: %v", mode, got)
		}
		if !maps.Equal(p.holds(), before) {
			t.Errorf("%s: versions changed moving to B", mode)
		}
	}

	// grpc-go's xDS client, through a relay that counts what reaches it.
	relay := e2e.NewRelay(t, b.GRPCAddr)
	cc := e2e.ProxylessClient(t, relay.Addr, grpcNode, "test", echoTarget)
	if st, err := e2e.Which(cc); err != nil || st != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("grpc-go client via B: %v %v", st, err)
	}
	if n := relayResources(relay.Responses()); n < 4 {
		t.Fatalf("grpc-go got %d resources from B; want listener, route, cluster and endpoints", n)
	}

	a.Stop(t)
	a = e2e.Serve(t, args...)
	relay.Requests()
	relay.Switch(a.GRPCAddr)
	waitResubscribed(t, relay)
	time.Sleep(quiet)
	if rs := relay.Responses(); relayResources(rs) != 0 {
		t.Errorf("grpc-go client moving from B to the restarted A was resent resources: %+v", rs)
	}
	if st, err := e2e.Which(cc); err != nil || st != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("grpc-go client after the move: %v %v", st, err)
	}
	for mode, p := range proxies {
		if got := p.sync(t, a.GRPCAddr); total(got) != 0 {
			t.Errorf("%s: reconnecting to the restarted A resent resources: %v", mode, got)
		}
	}

	// After all that, a change still goes out, and alone: the echo endpoint.
	e2e.WriteFileAtomic(t, echoFile, echoServiceEntry(second))
	e2e.Eventually(t, "grpc-go client follows the new endpoint", 30*time.Second, func() bool {
		st, err := e2e.Which(cc)
		return err == nil && st == healthpb.HealthCheckResponse_NOT_SERVING
	})
	for _, r := range relay.Responses() {
		if r.TypeURL == resourcev3.EndpointType && r.Resources != 1 {
			t.Errorf("grpc-go client: after an endpoint change got %+v; want one ClusterLoadAssignment", r)
		}
		if r.TypeURL != resourcev3.EndpointType {
			t.Logf("grpc-go client: after an endpoint change also got %+v", r)
		}
	}
	// Reconnecting after the change: delta gets the one changed resource;
	// SotW, whose EDS version covers every name, gets its EDS again but
	// no cluster or listener.
	if got := proxies["delta"].sync(t, a.GRPCAddr); total(got) != 1 || !slices.Equal(got[resourcev3.EndpointType], []int{1}) {
		t.Errorf("delta: reconnecting after an endpoint change got %v; want one ClusterLoadAssignment", got)
	}
	if got := proxies["sotw"].sync(t, a.GRPCAddr); len(got[resourcev3.ClusterType])+len(got[resourcev3.ListenerType]) != 0 || len(got[resourcev3.EndpointType]) != 1 {
		t.Errorf("sotw: reconnecting after an endpoint change got %v; want one EDS response and no CDS or LDS", got)
	}
}

// readExample returns a file of examples/NAME.
func readExample(t *testing.T, name ...string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(append([]string{e2e.ModuleRoot(), "examples"}, name...)...))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func relayResources(rs []e2e.RelayResponse) int {
	n := 0
	for _, r := range rs {
		n += r.Resources
	}
	return n
}

// waitResubscribed waits until the relay passed up a request of each of
// the four types grpc-go asks for on its new stream.
func waitResubscribed(t *testing.T, relay *e2e.Relay) {
	t.Helper()
	seen := map[string]bool{}
	e2e.Eventually(t, "grpc-go resubscribes on its new stream", 30*time.Second, func() bool {
		for _, typ := range relay.Requests() {
			seen[typ] = true
		}
		return len(seen) >= 4
	})
}
