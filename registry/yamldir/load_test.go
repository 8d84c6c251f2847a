package yamldir_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/librarymesh/controlplane/registry"
	"github.com/librarymesh/controlplane/registry/yamldir"
)

func TestLoadExampleLibrary(t *testing.T) {
	s := registry.NewStore(nil)
	if ps := yamldir.Load("../../examples/library", s); len(ps) != 0 {
		t.Fatalf("problems: %v", ps)
	}
	v := s.View()
	pg := v.Service("postgres-1-vm.default.svc.cluster.local")
	if pg == nil {
		t.Fatal("postgres-1-vm service missing")
	}
	if got := pg.Sources; len(got) != 2 {
		t.Errorf("postgres sources = %v, want Service and ServiceEntry", got)
	}
	if len(pg.Addresses) != 1 || pg.Addresses[0] != "10.96.0.30" {
		t.Errorf("postgres addresses = %v", pg.Addresses)
	}
	if p, ok := pg.Port(5432); !ok || p.Protocol != registry.ProtocolTCP || p.Name != "tcp" {
		t.Errorf("postgres port 5432 = %+v, %v", p, ok)
	}
	eps := v.Endpoints(pg.Hostname)
	if len(eps) != 1 || eps[0].Address != "10.128.0.14" || eps[0].ServiceAccount != "postgres" {
		t.Errorf("postgres endpoints = %+v", eps)
	}
	vm := v.WorkloadByIP("10.128.0.14")
	if vm == nil || vm.Kind != registry.KindServiceEntry || vm.Name != "postgres-1-vm" {
		t.Errorf("VM workload = %+v", vm)
	}
	if got := v.ServicesForWorkload(vm); len(got) != 1 || got[0] != pg {
		t.Errorf("services for VM = %v", got)
	}
	inv := v.Service("inventory.default.svc.cluster.local")
	if inv == nil || len(v.Endpoints(inv.Hostname)) != 2 {
		t.Fatalf("inventory = %+v, endpoints %v", inv, v.Endpoints("inventory.default.svc.cluster.local"))
	}
	if p, _ := inv.Port(8080); p.Protocol != registry.ProtocolHTTP {
		t.Errorf("inventory port protocol = %s, want HTTP", p.Protocol)
	}
	if pod := v.WorkloadByIP("10.8.0.5"); pod == nil || pod.ServiceAccount != "inventory" {
		t.Errorf("pod workload = %+v", pod)
	}
	if pas := v.PeerAuthentications(); len(pas) != 1 || pas[0].Mode != registry.MTLSStrict {
		t.Errorf("peer authentications = %+v", pas)
	}
	drs := v.DestinationRules() // by namespace/name: default/inventory, istio-system/default
	if len(drs) != 2 || drs[1].TLS().Mode != registry.ClientTLSIstioMutual || drs[1].Host != "*.local" {
		t.Fatalf("destination rules = %+v", drs)
	}
	if inv := drs[0]; inv.Host != "inventory.default.svc.cluster.local" || len(inv.Subsets) != 2 || inv.Subsets[1].Labels["version"] != "v2" {
		t.Errorf("inventory rule = %+v, want subsets v1 and v2 by version", inv)
	}
}

// TestLoadIsOneWrite: a folder is loaded in one write (one revision), and
// its problems are reported in file order whatever order the files were
// decoded in.
func TestLoadIsOneWrite(t *testing.T) {
	dir := t.TempDir()
	for i := range 20 {
		writeFile(t, filepath.Join(dir, fmt.Sprintf("f%02d.yaml", i)), strings.ReplaceAll(entryYAML(fmt.Sprintf("10.128.0.%d", i+1), 5432),
			"postgres-1-vm", fmt.Sprintf("e%d", i))+"---\nkind: [broken\n")
	}
	s := registry.NewStore(nil)
	ps := yamldir.Load(dir, s)
	if got := s.View().Revision(); got != 1 {
		t.Errorf("revision %d after the load, want 1 (one write)", got)
	}
	if got := len(s.View().Services()); got != 20 {
		t.Errorf("%d services, want 20", got)
	}
	if len(ps) != 20 {
		t.Fatalf("%d problems, want one per file: %v", len(ps), ps)
	}
	for i, p := range ps {
		if want := filepath.Join(dir, fmt.Sprintf("f%02d.yaml", i)); !strings.HasPrefix(p.Source, want+":") {
			t.Errorf("problem %d is at %s, want in %s", i, p.Source, want)
		}
	}
}
