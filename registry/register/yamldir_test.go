package register

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/librarymesh/controlplane/registry"
	"github.com/librarymesh/controlplane/registry/yamldir"
)

// selectingEntry is a ServiceEntry a user wrote that picks the VM's
// WorkloadEntry by label (for --as workloadentry).
const selectingEntry = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: postgres
  namespace: default
spec:
  hosts: [postgres-1-vm.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 5432, name: tcp, protocol: TCP}
  workloadSelector:
    labels: {app: postgres-1-vm}
`

// What register writes in file mode is what the folder source reads: the VM
// becomes an endpoint of NAME.NS.svc.cluster.local on port 5432.
func TestFolderSourceReadsRegisteredVM(t *testing.T) {
	for _, as := range []string{"serviceentry", "service", "workloadentry"} {
		t.Run(as, func(t *testing.T) {
			dir := t.TempDir()
			if as == "workloadentry" {
				if err := os.WriteFile(filepath.Join(dir, "postgres-se.yaml"), []byte(selectingEntry), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := Register(context.Background(), FileWriter{Dir: dir}, mustParse(t, postgresArgs(as))); err != nil {
				t.Fatal(err)
			}
			store := registry.NewStore(quietLog())
			if problems := yamldir.Load(dir, store); len(problems) > 0 {
				t.Fatalf("folder source problems: %v", problems)
			}
			view := store.View()
			const host = "postgres-1-vm.default.svc.cluster.local"
			svc := view.Service(host)
			if svc == nil {
				t.Fatalf("no service %s in %v", host, view.Services())
			}
			if p, ok := svc.Port(5432); !ok || p.Protocol != registry.ProtocolTCP {
				t.Errorf("port 5432 = %+v, %v", p, ok)
			}
			eps := view.Endpoints(host)
			if len(eps) != 1 || eps[0].Address != "127.0.0.1" {
				t.Fatalf("endpoints = %+v, want the VM", eps)
			}
			if p, _ := svc.Port(5432); eps[0].PortFor(p) != 5432 {
				t.Errorf("endpoint port = %d", eps[0].PortFor(p))
			}
			if as != "service" && eps[0].ServiceAccount != "postgres" {
				t.Errorf("endpoint service account = %q", eps[0].ServiceAccount)
			}
		})
	}
}
