package register

import (
	"context"
	"slices"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/librarymesh/controlplane/registry"
	"github.com/librarymesh/controlplane/registry/yamldir"
	"github.com/librarymesh/controlplane/snapshot"
	"github.com/librarymesh/controlplane/snapshot/bootstrap"
)

// The whole VM path without a network: register writes the folder, the
// folder source reads it, and the snapshot gives a pod the VM as the
// endpoint of outbound|5432||HOST and the VM's Envoy (with the node its
// bundle's bootstrap announces) the inbound cluster operators look for.
func TestRegisteredVMReachesSnapshot(t *testing.T) {
	dir := t.TempDir()
	vm := mustParse(t, Args{Positional: []string{"postgres-1-vm", "127.0.0.1", "5432:tcp/TCP"},
		Namespace: "default", ServiceAccount: "postgres"})
	if _, err := Register(context.Background(), FileWriter{Dir: dir}, vm); err != nil {
		t.Fatal(err)
	}
	store := registry.NewStore(quietLog())
	if problems := yamldir.Load(dir, store); len(problems) > 0 {
		t.Fatalf("problems: %v", problems)
	}
	b := snapshot.NewBuilder(store.View(), snapshot.Options{TrustDomain: "cluster.local", RootNamespace: "istio-system"})

	pod := &snapshot.Proxy{ID: "sidecar~127.0.0.2~inventory-abc.default~default.svc.cluster.local", Type: snapshot.SidecarProxy,
		IPs: []string{"127.0.0.2"}, Name: "inventory-abc", Namespace: "default", DNSDomain: "default.svc.cluster.local"}
	res, err := b.Build(pod)
	if err != nil {
		t.Fatal(err)
	}
	const outbound = "outbound|5432||postgres-1-vm.default.svc.cluster.local"
	if !hasCluster(res.Clusters, outbound) {
		t.Fatalf("pod clusters %v lack %s", names(res.Clusters), outbound)
	}
	if got := endpointIPs(res.Endpoints, outbound); !slices.Equal(got, []string{"127.0.0.1"}) {
		t.Errorf("%s endpoints = %v, want the VM", outbound, got)
	}

	boot, err := bootstrap.Bootstrap(bootstrap.Options{Name: vm.Name, Namespace: vm.Namespace, ServiceAccount: vm.ServiceAccount,
		IP: vm.IP, XDSAddress: "127.0.0.1:15012"})
	if err != nil {
		t.Fatal(err)
	}
	vmProxy, err := snapshot.ParseProxy(boot.GetNode())
	if err != nil {
		t.Fatal(err)
	}
	res, err = b.Build(vmProxy)
	if err != nil {
		t.Fatal(err)
	}
	const inbound = "inbound|5432|tcp|postgres-1-vm.default.svc.cluster.local"
	if !hasCluster(res.Clusters, inbound) {
		t.Errorf("VM clusters %v lack %s", names(res.Clusters), inbound)
	}
}

// TestRegisteredVMLocality: --locality reaches the model as the locality
// of the VM's endpoint and workload, in both shapes that can carry it.
func TestRegisteredVMLocality(t *testing.T) {
	for _, as := range []string{"serviceentry", "workloadentry"} {
		t.Run(as, func(t *testing.T) {
			dir := t.TempDir()
			vm := mustParse(t, Args{Positional: []string{"postgres-1-vm", "10.128.0.14", "5432:tcp/TCP"},
				Namespace: "default", ServiceAccount: "postgres", Locality: "region1/zone1", As: as})
			if _, err := Register(context.Background(), FileWriter{Dir: dir}, vm); err != nil {
				t.Fatal(err)
			}
			store := registry.NewStore(quietLog())
			if problems := yamldir.Load(dir, store); len(problems) > 0 {
				t.Fatalf("problems: %v", problems)
			}
			if w := store.View().WorkloadByIP("10.128.0.14"); w == nil || w.Locality != "region1/zone1" {
				t.Errorf("workload = %+v, want locality region1/zone1", w)
			}
		})
	}
}

func names(rs []types.Resource) []string {
	var out []string
	for _, r := range rs {
		if c, ok := r.(*clusterv3.Cluster); ok {
			out = append(out, c.GetName())
		}
	}
	return out
}

func hasCluster(rs []types.Resource, name string) bool { return slices.Contains(names(rs), name) }

func endpointIPs(rs []types.Resource, cluster string) []string {
	var out []string
	for _, r := range rs {
		cla, ok := r.(*endpointv3.ClusterLoadAssignment)
		if !ok || cla.GetClusterName() != cluster {
			continue
		}
		for _, l := range cla.GetEndpoints() {
			for _, e := range l.GetLbEndpoints() {
				out = append(out, e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress())
			}
		}
	}
	return out
}
