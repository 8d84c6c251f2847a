//go:build unix

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/librarymesh/controlplane/internal/e2e"
	"github.com/librarymesh/controlplane/meshname"
)

const pgHost = "postgres-1-vm.default.svc.cluster.local"

var (
	pgCluster = meshname.OutboundCluster(5432, "", pgHost)
	evilSAN   = meshname.SPIFFEID("cluster.local", "other", "evil")
)

// serveLibrary starts a server on a copy of examples/library (plus extra
// args) and returns it with the folder.
func serveLibrary(t *testing.T, args ...string) (*e2e.Server, string) {
	t.Helper()
	dir := t.TempDir()
	files, err := filepath.Glob(filepath.Join(e2e.ModuleRoot(), "examples", "library", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("examples/library: %v", err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		e2e.WriteFileAtomic(t, filepath.Join(dir, filepath.Base(f)), string(data))
	}
	return e2e.Serve(t, append([]string{"--config-dir", dir, "--debounce", "20ms"}, args...)...), dir
}

// markerEntry is a harmless ServiceEntry of its own host in namespace ns:
// once a sidecar sees its cluster, every file written before it was read.
func markerEntry(ns, name string, exportTo string) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: %[2]s, namespace: %[1]s}
spec:
  hosts: [%[2]s.%[1]s.svc.cluster.local]
  exportTo: [%[3]q]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 7000, name: tcp, protocol: TCP}]
  endpoints: [{address: 10.140.0.1}]
`, ns, name, exportTo)
}

func markerCluster(ns, name string) string {
	return meshname.OutboundCluster(7000, "", name+"."+ns+".svc.cluster.local")
}

// clusterJSON is the cluster as the sidecar received it, or "".
func (w *adsWatcher) clusterJSON(name string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	c, ok := w.clusters[name]
	if !ok {
		return ""
	}
	return protojson.Format(c)
}

// TestHostHijackIsRefused: a ServiceEntry in namespace other that names the
// postgres VM's host (a Kubernetes Service host of namespace default) is
// refused with a problem naming both objects and the field, in the log,
// /debug/problems and the config error metric; the inventory sidecar gets
// neither its endpoint nor its SAN.
func TestHostHijackIsRefused(t *testing.T) {
	srv, dir := serveLibrary(t)
	w := watchADS(t, srv.GRPCAddr, podNode)
	w.waitState(t, "the postgres endpoints", 20*time.Second, func(s adsState) bool {
		return slices.Equal(s.endpoints[pgCluster], []string{"10.128.0.14:5432"})
	})
	if !strings.Contains(w.clusterJSON(pgCluster), meshname.SPIFFEID("cluster.local", "default", "postgres")) {
		t.Fatalf("the postgres cluster does not accept the VM's own SAN:\n%s", w.clusterJSON(pgCluster))
	}

	postgresEntryReported(t, srv, filepath.Join(dir, "hijack.yaml"), "other", "evil", "203.0.113.66", "evil", "HostNotOwned",
		"hijack.yaml", "ServiceEntry other/evil", "Service default/postgres-1-vm", "spec.hosts[0]")
	srv.WaitLog(t, "reason=HostNotOwned", 10*time.Second)
	if got := e2e.Metric(t, srv.HTTPAddr, "controlplane_config_errors"); got < 1 {
		t.Errorf("controlplane_config_errors = %v, want at least 1", got)
	}

	// A later file reaching the sidecar shows the hijack was read before
	// (in default: the library's Sidecar scopes default's proxies to it).
	e2e.WriteFileAtomic(t, filepath.Join(dir, "marker.yaml"), markerEntry("default", "marker", "*"))
	s := w.waitState(t, "the marker cluster", 10*time.Second, func(s adsState) bool {
		return slices.Contains(s.clusters, markerCluster("default", "marker"))
	})
	if got := s.endpoints[pgCluster]; !slices.Equal(got, []string{"10.128.0.14:5432"}) {
		t.Errorf("postgres endpoints %v, want only the VM's 10.128.0.14:5432", got)
	}
	for name, eps := range s.endpoints {
		if strings.Contains(strings.Join(eps, ","), "203.0.113.66") {
			t.Errorf("the foreign endpoint reached EDS of %s: %v", name, eps)
		}
	}
	if js := w.clusterJSON(pgCluster); strings.Contains(js, evilSAN) {
		t.Errorf("the foreign SAN %s reached the postgres cluster:\n%s", evilSAN, js)
	}
	checkDuplicateHost(t, srv, w, dir)
}

// checkDuplicateHost: a second ServiceEntry for the host in another file
// (same namespace, so allowed to name it) loses to the first by name and
// adds nothing; the problem names both objects and both files.
func checkDuplicateHost(t *testing.T, srv *e2e.Server, w *adsWatcher, dir string) {
	t.Helper()
	postgresEntryReported(t, srv, filepath.Join(dir, "a-copy.yaml"), "default", "postgres-copy", "10.128.0.99", "copy", "HostConflict",
		"ServiceEntry default/postgres-copy", "ServiceEntry default/postgres-1-vm", "a-copy.yaml", "postgres-1-vm.yaml")
	e2e.WriteFileAtomic(t, filepath.Join(dir, "marker2.yaml"), markerEntry("default", "marker2", "*"))
	s := w.waitState(t, "the second marker cluster", 10*time.Second, func(s adsState) bool {
		return slices.Contains(s.clusters, markerCluster("default", "marker2"))
	})
	if got := s.endpoints[pgCluster]; !slices.Equal(got, []string{"10.128.0.14:5432"}) {
		t.Errorf("postgres endpoints %v after a duplicate ServiceEntry, want only 10.128.0.14:5432", got)
	}
}

// TestBadConfigFilesAreSkipped: a FIFO, a symlink to /dev/zero and a file
// over --config-max-file-bytes in the folder are reported and skipped, the
// server stays up, and a later valid file still reaches the sidecar.
func TestBadConfigFilesAreSkipped(t *testing.T) {
	dir := t.TempDir()
	lib, err := os.ReadFile(filepath.Join(e2e.ModuleRoot(), "examples", "library", "inventory.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	e2e.WriteFileAtomic(t, filepath.Join(dir, "inventory.yaml"), string(lib))
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo.yaml"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", filepath.Join(dir, "zero.yaml")); err != nil {
		t.Fatal(err)
	}
	big := markerEntry("default", "big", "*") + "# " + strings.Repeat("x", 64<<10) + "\n"
	e2e.WriteFileAtomic(t, filepath.Join(dir, "big.yaml"), big)
	srv := e2e.Serve(t, "--config-dir", dir, "--debounce", "20ms", "--config-max-file-bytes", "65536")
	w := watchADS(t, srv.GRPCAddr, podNode)

	problems := e2e.HTTPGet(t, "http://"+srv.HTTPAddr+"/debug/problems")
	for _, want := range []string{"fifo.yaml", "zero.yaml", "NotRegularFile", "big.yaml", "FileTooLarge", "65536"} {
		if !strings.Contains(problems, want) {
			t.Errorf("/debug/problems does not name %q:\n%s", want, problems)
		}
	}
	// A FIFO created while serving, then a valid file: the valid one is applied.
	if err := syscall.Mkfifo(filepath.Join(dir, "late-fifo.yaml"), 0o644); err != nil {
		t.Fatal(err)
	}
	e2e.WriteFileAtomic(t, filepath.Join(dir, "zz-valid.yaml"), markerEntry("default", "valid", "*"))
	s := w.waitState(t, "the valid file's cluster", 10*time.Second, func(s adsState) bool {
		return slices.Contains(s.clusters, markerCluster("default", "valid"))
	})
	if slices.Contains(s.clusters, markerCluster("default", "big")) {
		t.Error("the oversize file was applied")
	}
	e2e.Eventually(t, "the late FIFO to be reported", 10*time.Second, func() bool {
		return strings.Contains(e2e.HTTPGet(t, "http://"+srv.HTTPAddr+"/debug/problems"), "late-fifo.yaml")
	})
	if code := readyzCode(t, srv.HTTPAddr); code != 200 {
		t.Errorf("/readyz = %d, want 200", code)
	}
}

// TestExportToHidesServices: a ServiceEntry exported to "." reaches a
// sidecar of its own namespace and not one of another namespace.
func TestExportToHidesServices(t *testing.T) {
	srv, dir := serveLibrary(t)
	const otherNode = "sidecar~10.9.0.5~shop-abc.shop~shop.svc.cluster.local"
	own := watchADS(t, srv.GRPCAddr, podNode)
	other := watchADS(t, srv.GRPCAddr, otherNode)
	e2e.WriteFileAtomic(t, filepath.Join(dir, "private.yaml"), markerEntry("default", "private", "."))
	own.waitState(t, "default's sidecar to see the private service", 10*time.Second, func(s adsState) bool {
		return slices.Contains(s.clusters, markerCluster("default", "private"))
	})
	// Written after the private one was applied, so when shop sees it,
	// shop's config was built with the private service in the model.
	e2e.WriteFileAtomic(t, filepath.Join(dir, "public.yaml"), markerEntry("default", "public", "*"))
	s := other.waitState(t, "shop's sidecar to see the public service", 10*time.Second, func(s adsState) bool {
		return slices.Contains(s.clusters, markerCluster("default", "public"))
	})
	if slices.Contains(s.clusters, markerCluster("default", "private")) {
		t.Errorf("a sidecar in namespace shop sees the ServiceEntry exported to \".\": %v", s.clusters)
	}
	if _, ok := s.endpoints[markerCluster("default", "private")]; ok {
		t.Error("a sidecar in namespace shop got the endpoints of the ServiceEntry exported to \".\"")
	}
}

// postgresEntryReported writes a ServiceEntry ns/name for the postgres host
// with one endpoint (addr, service account sa) to path, waits until
// /debug/problems reports it with reason, and checks the problems name
// every want.
func postgresEntryReported(t *testing.T, srv *e2e.Server, path, ns, name, addr, sa, reason string, wants ...string) {
	t.Helper()
	e2e.WriteFileAtomic(t, path, `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: `+name+`, namespace: `+ns+`}
spec:
  hosts: [`+pgHost+`]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 5432, name: tcp, protocol: TCP}]
  endpoints: [{address: `+addr+`, serviceAccount: `+sa+`}]
`)
	var problems string
	e2e.Eventually(t, reason+" to be reported", 10*time.Second, func() bool {
		problems = e2e.HTTPGet(t, "http://"+srv.HTTPAddr+"/debug/problems")
		return strings.Contains(problems, reason)
	})
	for _, want := range wants {
		if !strings.Contains(problems, want) {
			t.Errorf("/debug/problems does not name %q:\n%s", want, problems)
		}
	}
}
