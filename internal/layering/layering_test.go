// Package layering holds a test that keeps the data flow one way:
// source -> registry -> snapshot -> server, with certauthority apart from xDS,
// the sidecar injector (inject) apart from all of them,
// meshname a leaf everyone may use, and the VM's programs (nodeagent,
// vmbundle) and leader election beside the flow, not inside it.
package layering

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/librarymesh/controlplane"

// Forbidden entries are path prefixes (a path and everything under it);
// one ending in "$" is that package alone.
func TestImportsGoOneWay(t *testing.T) {
	tests := []struct {
		pkg        string
		rule       string   // why, in one line
		deps       []string // the package must not depend on these at all
		imports    []string // the package must not import these itself
		stdlibOnly bool     // every dependency is in the standard library
	}{
		{pkg: "meshname", rule: "a leaf: names are strings, made and parsed with the standard library alone",
			stdlibOnly: true},
		{pkg: "internal/testutil", rule: "helpers every package's tests may use: the standard library only",
			stdlibOnly: true},
		{pkg: "registry/...", rule: "sources -> model: knows no xDS, no CA, nothing downstream",
			deps: []string{module + "/snapshot", module + "/server", module + "/certauthority", module + "/nodeagent",
				module + "/vmbundle", module + "/leader", module + "/cmd", "github.com/envoyproxy/"}},
		{pkg: "snapshot/...", rule: "model -> xDS, pure: no server, CA, Kubernetes client, network or files",
			deps: []string{module + "/server", module + "/certauthority", module + "/nodeagent", module + "/vmbundle",
				module + "/leader", module + "/cmd", "k8s.io/client-go"},
			imports: []string{"google.golang.org/grpc", "os", "os/exec", "net/http", "io/ioutil"}},
		{pkg: "snapshot/bootstrap", rule: "the VM's Envoy bootstrap needs Envoy protos and names, not the snapshot builder or the model",
			deps: []string{module + "/snapshot$", module + "/registry"}},
		{pkg: "certauthority/...", rule: "the CA stands apart from xDS and the model; it knows leaders only as a func",
			deps: []string{module + "/snapshot", module + "/server", module + "/registry", module + "/nodeagent",
				module + "/vmbundle", module + "/leader", module + "/cmd", "github.com/envoyproxy/"}},
		{pkg: "certauthority", rule: "the CA core is the same in and out of Kubernetes (certauthority/kube adapts it)",
			deps: []string{"k8s.io/"}},
		{pkg: "server/...", rule: "serves what snapshot built: no CA, no Kubernetes client, no leader election",
			deps: []string{module + "/certauthority", module + "/nodeagent", module + "/vmbundle", module + "/leader",
				module + "/cmd", "k8s.io/client-go"}},
		{pkg: "inject", rule: "admission request -> JSON patch: no Kubernetes client, CA, model or xDS",
			deps: []string{module + "/registry", module + "/snapshot", module + "/server", module + "/certauthority",
				module + "/nodeagent", module + "/vmbundle", module + "/leader", module + "/cmd", "k8s.io/client-go", "github.com/envoyproxy/"}},
		{pkg: "inject/kube", rule: "patches the webhook configuration's caBundle: knows the root only as a func",
			deps: []string{module + "/registry", module + "/snapshot", module + "/server", module + "/certauthority",
				module + "/nodeagent", module + "/vmbundle", module + "/leader", module + "/cmd"}},
		{pkg: "leader", rule: "elects a leader with a Lease and nothing else of the module",
			deps: []string{module}},
		{pkg: "preflight", rule: "asks the API server what the cluster lacks; nothing else of the module",
			deps: []string{module}},
		{pkg: "nodeagent", rule: "the VM's own program: reads its bundle, talks to the CA and (registration, health) the ADS port over gRPC, builds no xDS config, no Kubernetes",
			deps: []string{module + "/registry", module + "/snapshot$", module + "/server", module + "/certauthority",
				module + "/leader", module + "/cmd", "k8s.io/"}},
		{pkg: "vmbundle", rule: "writes and reads a VM's files: the bootstrap and names, no model, CA, server or Kubernetes",
			deps: []string{module + "/registry", module + "/snapshot$", module + "/server", module + "/certauthority",
				module + "/nodeagent", module + "/leader", module + "/cmd", "k8s.io/"}},
	}
	for _, tt := range tests {
		t.Run(tt.pkg, func(t *testing.T) {
			deps := goList(t, `{{range .Deps}}{{$.ImportPath}} {{.}}{{"\n"}}{{end}}`, tt.pkg)
			check(t, tt.rule, deps, tt.deps)
			check(t, tt.rule, goList(t, `{{range .Imports}}{{$.ImportPath}} {{.}}{{"\n"}}{{end}}`, tt.pkg), tt.imports)
			if tt.stdlibOnly {
				for _, e := range deps {
					if first, _, _ := strings.Cut(e.dep, "/"); strings.Contains(first, ".") {
						t.Errorf("%s depends on %s, outside the standard library (%s)", e.pkg, e.dep, tt.rule)
					}
				}
			}
		})
	}
}

type edge struct{ pkg, dep string }

func check(t *testing.T, rule string, edges []edge, forbidden []string) {
	t.Helper()
	for _, f := range forbidden {
		exact, isExact := strings.CutSuffix(f, "$")
		for _, e := range edges {
			if e.dep == exact || (!isExact && strings.HasPrefix(e.dep, strings.TrimSuffix(f, "/")+"/")) {
				t.Errorf("%s depends on %s (%s)", e.pkg, e.dep, rule)
			}
		}
	}
}

func goList(t *testing.T, format, pkg string) []edge {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", format, module+"/"+pkg).Output()
	if err != nil {
		t.Fatalf("go list %s: %v", pkg, err)
	}
	var edges []edge
	for line := range strings.Lines(string(out)) {
		if p, d, ok := strings.Cut(strings.TrimSpace(line), " "); ok {
			edges = append(edges, edge{p, d})
		}
	}
	if len(edges) == 0 && !strings.Contains(format, ".Imports") {
		t.Fatalf("go list %s listed no dependencies: the pattern matches nothing", pkg)
	}
	return edges
}
