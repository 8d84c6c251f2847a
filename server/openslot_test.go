package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"
	networkingapi "istio.io/api/networking/v1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/librarymesh/controlplane/registry"
	"github.com/librarymesh/controlplane/registry/autoregister"
	"github.com/librarymesh/controlplane/registry/yamldir"
)

// stalledBackend is a registration backend whose writes wait until
// released: a Kubernetes API that does not answer.
type stalledBackend struct {
	*autoregister.StoreBackend
	release chan struct{}
}

func (b stalledBackend) Create(ctx context.Context, we *networkingv1.WorkloadEntry) error {
	select {
	case <-b.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return b.StoreBackend.Create(ctx, we)
}

// TestStalledRegistrationsHoldUpNoOtherProxy: VMs of a WorkloadGroup
// connecting while the registry's backend does not answer wait for it,
// each on its own; a sidecar connecting behind more of them than the
// server takes in first requests at a time still gets its config at once.
func TestStalledRegistrationsHoldUpNoOtherProxy(t *testing.T) {
	store := registry.NewStore(slog.New(slog.DiscardHandler))
	if ps := yamldir.Load("../examples/library", store); len(ps) > 0 {
		t.Fatalf("examples/library has problems: %v", ps)
	}
	g := &networkingv1.WorkloadGroup{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "pg"},
		Spec: networkingapi.WorkloadGroup{Template: &networkingapi.WorkloadEntry{ServiceAccount: "postgres"},
			Metadata: &networkingapi.WorkloadGroup_ObjectMeta{Labels: map[string]string{"app": "pg"}}}}
	if ps := store.Upsert("test", g); len(ps) > 0 {
		t.Fatal(ps)
	}
	backend := stalledBackend{StoreBackend: autoregister.NewStoreBackend(store), release: make(chan struct{})}
	defer close(backend.release)
	ar, err := autoregister.New(autoregister.Config{Backend: backend, Instance: "replica-1", GracePeriod: time.Second, MaxWorkloads: 100,
		Groups: func(ns, name string) *registry.WorkloadGroup { return store.View().WorkloadGroup(ns, name) }})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{GRPCAddr: "127.0.0.1:0", Registry: store, Debounce: 10 * time.Millisecond, AutoRegister: ar})
	if err != nil {
		t.Fatal(err)
	}
	// Registration needs a proven identity: the VMs' own port proves it.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.AddGRPCListener("vms", lis, grpc.StreamInterceptor(RequireIdentity(func(context.Context) (Identity, error) {
		return Identity{Namespace: "default", ServiceAccount: "postgres"}, nil
	})))
	run(t, s)
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(dialAddr(t, lis.Addr().String()))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	md, err := structpb.NewStruct(map[string]any{"NAMESPACE": "default", "SERVICE_ACCOUNT": "postgres", "AUTO_REGISTER_GROUP": "pg", "INTERCEPTION_MODE": "NONE"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range runtime.GOMAXPROCS(0) + 2 {
		st, err := ads.DeltaAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n := node(fmt.Sprintf("sidecar~10.90.0.%d~pg-%d.default~default.svc.cluster.local", i+1, i))
		n.Metadata = md
		if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: n, TypeUrl: resourcev3.ClusterType}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every VM's registration waiting for the backend", func() bool { return goroutinesIn("stalledBackend.Create(") == runtime.GOMAXPROCS(0)+2 })
	st, rx := deltaStream(t, s)
	if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node(podNodeID), TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatal(err)
	}
	if _, err := rx.next(2 * time.Second); err != nil {
		t.Fatalf("a sidecar behind %d stalled registrations: %v", runtime.GOMAXPROCS(0)+2, err)
	}
}

// TestUnreadDebugAnswersHoldUpNoProxy: debug clients (istioctl) that ask
// for big answers and read none of them wait for themselves; a proxy
// connecting behind more of them than the server takes in first requests
// at a time still gets its config at once.
func TestUnreadDebugAnswersHoldUpNoProxy(t *testing.T) {
	s, store := startLibrary(t)
	se := manyHosts(1000)
	if ps := store.Upsert("test", se); len(ps) > 0 {
		t.Fatalf("upsert: %v", ps)
	}
	// A sidecar whose config dump (about 700 KB) the debug clients ask for.
	st, rx := deltaStream(t, s)
	if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node(podNodeID), TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatal(err)
	}
	if _, err := rx.next(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	// Fixed windows: gRPC's client would otherwise grow them.
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(dialAddr(t, s.GRPCAddr().String(),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(1<<30)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clients := runtime.GOMAXPROCS(0) + 2
	for i := range clients {
		debug, err := ads.DeltaAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// gRPC sends the first answer whatever its size; the second waits.
		for range 2 {
			if err := debug.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node(fmt.Sprintf("istioctl-%d", i)), TypeUrl: istioConfigDump,
				ResourceNamesSubscribe: []string{podNodeID}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, "every debug client's answer waiting for it", func() bool { return goroutinesIn("(*writeQuota).get(") == clients })
	vm, vmrx := deltaStream(t, s)
	if err := vm.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node(vmNodeID), TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatal(err)
	}
	if _, err := vmrx.next(2 * time.Second); err != nil {
		t.Fatalf("a sidecar behind %d debug clients that do not read: %v", clients, err)
	}
}
