package yamldir_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/librarymesh/controlplane/registry"
	"github.com/librarymesh/controlplane/registry/yamldir"
)

const olderVersions = `apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: db, namespace: data}
spec:
  hosts: [db.data.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 5432, name: tcp-pg}]
  workloadSelector:
    labels: {app: db}
---
apiVersion: networking.istio.io/v1alpha3
kind: WorkloadEntry
metadata: {name: db-vm, namespace: data}
spec:
  address: 10.128.0.40
  labels: {app: db}
  serviceAccount: db
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: db, namespace: data}
spec:
  selector: {matchLabels: {app: db}}
  mtls: {mode: PERMISSIVE}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: db, namespace: data}
spec:
  host: db
  trafficPolicy: {tls: {mode: DISABLE}}
`

func TestLoadOlderAPIVersions(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "db.yaml"), []byte(olderVersions), 0o644); err != nil {
		t.Fatal(err)
	}
	s := registry.NewStore(nil)
	if ps := yamldir.Load(dir, s); len(ps) != 0 {
		t.Fatalf("problems: %v", ps)
	}
	v := s.View()
	eps := v.Endpoints("db.data.svc.cluster.local")
	if len(eps) != 1 || eps[0].Address != "10.128.0.40" || eps[0].Workload != "WorkloadEntry data/db-vm" {
		t.Errorf("endpoints = %+v", eps)
	}
	if pas := v.PeerAuthentications(); len(pas) != 1 || pas[0].Mode != registry.MTLSPermissive {
		t.Errorf("peer authentications = %+v", pas)
	}
	if drs := v.DestinationRules(); len(drs) != 1 || drs[0].Host != "db.data.svc.cluster.local" || drs[0].TLS().Mode != registry.ClientTLSDisable {
		t.Errorf("destination rules = %+v", drs)
	}
}

func TestLoadDecodeProblems(t *testing.T) {
	tests := []struct {
		name, doc, wantSource, wantField, wantReason string
		applied                                      bool
	}{{
		name:       "unknown metadata field is a warning",
		doc:        "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  lables: {x: y}\nspec:\n  clusterIP: 10.96.0.9\n  ports: [{name: tcp, port: 80}]\n",
		wantSource: ":1", wantReason: "UnknownField", applied: true,
	}, {
		name:       "unknown Istio spec field is a warning",
		doc:        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a}\nspec:\n  hosts: [a.example]\n  resolutoin: DNS\n  ports: [{number: 80, name: http}]\n",
		wantSource: ":6", wantField: "spec.resolutoin", wantReason: "UnknownField", applied: true,
	}, {
		name:       "unknown nested Istio spec field is a warning",
		doc:        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a}\nspec:\n  hosts: [a.example]\n  resolution: DNS\n  ports: [{number: 80, name: http, protocl: HTTP}]\n",
		wantSource: ":7", wantField: "spec.ports[0].protocl", wantReason: "UnknownField", applied: true,
	}, {
		name:       "bad enum value",
		doc:        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a}\nspec:\n  hosts: [a.example]\n  resolution: STATICX\n",
		wantSource: ":6", wantField: "spec.resolution", wantReason: "InvalidObject",
	}, {
		name:       "wrong type",
		doc:        "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec:\n  ports:\n  - port: abc\n",
		wantSource: ":5", wantField: "spec.ports.port", wantReason: "InvalidObject",
	}, {
		name:       "missing kind",
		doc:        "apiVersion: v1\nmetadata: {name: a}\n",
		wantSource: ":1", wantField: "kind", wantReason: "MissingKind",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "a.yaml")
			if err := os.WriteFile(file, []byte(tc.doc), 0o644); err != nil {
				t.Fatal(err)
			}
			s := registry.NewStore(nil)
			ps := yamldir.Load(dir, s)
			if len(ps) != 1 || ps[0].Source != file+tc.wantSource || ps[0].Field != tc.wantField || ps[0].Reason != tc.wantReason {
				t.Fatalf("problems = %+v, want %s at %s%s %s", ps, tc.wantReason, file, tc.wantSource, tc.wantField)
			}
			if got := len(s.View().Services()) > 0; got != tc.applied {
				t.Errorf("object applied = %v, want %v", got, tc.applied)
			}
		})
	}
}
