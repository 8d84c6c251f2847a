package snapshot

import (
	"slices"
	"testing"
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
