// Package layering holds a test that keeps the data flow one way:
// source -> registry -> snapshot -> server, with certauthority apart from xDS.
package layering

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/librarymesh/controlplane"

func TestImportsGoOneWay(t *testing.T) {
	tests := []struct {
		pkg     string
		deps    []string // path prefixes the package must not depend on at all
		imports []string // path prefixes the package must not import itself
	}{
		{pkg: "registry/...", deps: []string{module + "/snapshot", module + "/server", module + "/certauthority", "github.com/envoyproxy/"}},
		{pkg: "snapshot/...", deps: []string{module + "/server", module + "/certauthority", "k8s.io/client-go"},
			imports: []string{"google.golang.org/grpc", "os", "os/exec", "net/http", "io/ioutil"}},
		{pkg: "certauthority", deps: []string{module + "/snapshot", module + "/server", module + "/registry", "github.com/envoyproxy/"}},
		{pkg: "server", deps: []string{module + "/certauthority", module + "/cmd", "k8s.io/client-go"}},
	}
	for _, tt := range tests {
		t.Run(tt.pkg, func(t *testing.T) {
			check(t, tt.pkg, goList(t, "{{join .Deps \"\\n\"}}", tt.pkg), tt.deps)
			check(t, tt.pkg, goList(t, "{{join .Imports \"\\n\"}}", tt.pkg), tt.imports)
		})
	}
}

func check(t *testing.T, pkg string, list, forbidden []string) {
	t.Helper()
	for _, f := range forbidden {
		for _, d := range list {
			if d == f || strings.HasPrefix(d, strings.TrimSuffix(f, "/")+"/") {
				t.Errorf("%s depends on %s", pkg, d)
			}
		}
	}
}

func goList(t *testing.T, format, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", format, module+"/"+pkg).Output()
	if err != nil {
		t.Fatalf("go list %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}
