package snapshot

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/librarymesh/controlplane/registry"
	"github.com/librarymesh/controlplane/registry/yamldir"
)

// TestExportToSharesPerNamespace: proxies of one namespace share one
// outbound part (the same protos), built from the services exported to
// that namespace; another namespace gets its own.
func TestExportToSharesPerNamespace(t *testing.T) {
	view, problems := loadMesh(t, "testdata/export-to/mesh.yaml")
	if len(problems) != 0 {
		t.Fatalf("export-to mesh: %v", problems)
	}
	b := NewBuilder(view, Options{})
	part := func(id, ns string) *Resources {
		t.Helper()
		shared, _, err := b.BuildParts(mustProxy(t, id, map[string]any{"NAMESPACE": ns}))
		if err != nil {
			t.Fatal(err)
		}
		return shared
	}
	a := part("sidecar~10.8.1.5~payments-abc.billing~billing.svc.cluster.local", "billing")
	a2 := part("sidecar~10.8.1.6~payments-def.billing~billing.svc.cluster.local", "billing")
	shop := part("sidecar~10.8.2.5~web-abc.shop~shop.svc.cluster.local", "shop")
	if a != a2 {
		t.Error("two proxies of namespace billing do not share their outbound part")
	}
	const ledger = "outbound|9000||ledger.billing.svc.cluster.local"
	if !slices.Contains(names(a.Clusters), ledger) {
		t.Errorf("billing does not see %s (exported to \".\"): %v", ledger, names(a.Clusters))
	}
	for _, c := range []string{ledger, "outbound|8080||catalog.shop.svc.cluster.local"} {
		if slices.Contains(names(shop.Clusters), c) || slices.Contains(names(shop.Endpoints), c) {
			t.Errorf("shop sees %s, which is not exported to it", c)
		}
	}
}

// TestForeignWorkloadIsNotTheProxys: when a ServiceEntry of namespace aaa
// wins the address of default's VM (no creation times: first by
// namespace), the VM's proxy does not get aaa's inbound side.
func TestForeignWorkloadIsNotTheProxys(t *testing.T) {
	dir := t.TempDir()
	entry := func(ns, name string) string {
		return "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: " + name + ", namespace: " + ns + "}\n" +
			"spec:\n  hosts: [" + name + "." + ns + ".svc.cluster.local]\n  location: MESH_INTERNAL\n  resolution: STATIC\n" +
			"  ports: [{number: 5432, name: tcp, protocol: TCP}]\n  endpoints: [{address: 10.128.0.14, serviceAccount: " + name + "}]\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "mesh.yaml"), []byte(entry("default", "postgres-1-vm")+"---\n"+entry("aaa", "evil")), 0o644); err != nil {
		t.Fatal(err)
	}
	store := registry.NewStore(nil)
	if ps := yamldir.Load(dir, store); len(ps) != 1 || ps[0].Reason != registry.ReasonAddressConflict {
		t.Fatalf("problems %v, want one AddressConflict", ps)
	}
	b := NewBuilder(store.View(), Options{})
	p := mustProxy(t, vmNodeID, map[string]any{"NAMESPACE": "default"})
	_, own, err := b.BuildParts(p)
	if err != nil {
		t.Fatal(err)
	}
	if own != nil {
		for _, c := range names(own.Clusters) {
			if strings.Contains(c, "evil") {
				t.Errorf("default's VM proxy got aaa's inbound cluster %s", c)
			}
		}
	}
	if k := b.Classify(p); k != PodSidecar {
		t.Errorf("default's VM proxy classified as %s by aaa's workload", k)
	}
}
