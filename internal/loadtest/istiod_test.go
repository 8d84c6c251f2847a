package loadtest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/librarymesh/controlplane/internal/e2e"
	"github.com/librarymesh/controlplane/internal/kubetest"
)

// TestIstiodPeer runs the istiod path of the benchmark on a small HTTP
// ServiceEntry scenario: our server and istiod (fed through a real
// kube-apiserver), SotW and delta, every change converging at both. It
// needs pilot-discovery (hack/install-tools.sh --istiod), which neither
// make test nor CI builds, so without it the test skips, in CI too.
func TestIstiodPeer(t *testing.T) {
	bin, crds, err := IstiodFiles()
	if err != nil {
		t.Skipf("skipping the istiod peer: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	sc := Scenario{Services: 5, Proxies: 5, EndpointChanges: 2, NewServiceChanges: 1, HTTPEntries: true}
	var progress strings.Builder
	rep, err := Run(ctx, Config{Scenario: sc, WorkDir: t.TempDir(), ServerBin: e2e.Binary(t), IstiodBin: bin, IstiodCRDs: crds,
		Modes: []string{"sotw", "delta"}, Timeout: time.Minute, Progress: &progress})
	if errors.Is(err, kubetest.ErrMissingBinaries) && !kubetest.InCI() {
		t.Skip(err)
	}
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	for _, mode := range []string{"sotw", "delta"} {
		r := rep.find(Istiod, mode)
		if r == nil || rep.find(Ours, mode) == nil {
			t.Fatalf("%s: no result for ours or istiod: %+v", mode, rep.Results)
		}
		if r.ConnectSeconds <= 0 || r.ColdStartSeconds <= 0 || r.RSSAfterMB <= 0 || r.Endpoint.Changes != 2 || r.Endpoint.P99Ms <= 0 ||
			r.NewService.Changes != 1 || r.NewService.P99Ms <= 0 || r.BytesPerProxyNewService <= 0 || r.BytesPerProxyEndpoint <= 0 {
			t.Errorf("istiod %s: incomplete result %+v", mode, *r)
		}
	}
	var table strings.Builder
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "istiod/ours") {
		t.Errorf("table lacks istiod's column:\n%s", table.String())
	}
	t.Logf("\n%s\n%s", table.String(), progress.String())
}

func TestUnallocated(t *testing.T) {
	for _, tc := range []struct {
		name string
		se   map[string]any
		want bool
	}{
		{"no addresses", map[string]any{"spec": map[string]any{"hosts": []any{"a.example"}}}, true},
		{"spec addresses", map[string]any{"spec": map[string]any{"addresses": []any{"10.0.0.1"}}}, false},
		{"allocated", map[string]any{"spec": map[string]any{}, "status": map[string]any{"addresses": []any{map[string]any{"value": "240.240.0.1"}}}}, false},
		{"empty status", map[string]any{"spec": map[string]any{}, "status": map[string]any{"addresses": []any{}}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := unallocated(unstructured.Unstructured{Object: tc.se}); got != tc.want {
				t.Errorf("unallocated = %t, want %t", got, tc.want)
			}
		})
	}
}

// TestStartOnPinsTheChild starts a process bound to CPU 0: it may run
// there only, while the test process keeps its own CPUs.
func TestStartOnPinsTheChild(t *testing.T) {
	before := cpusAllowed(os.Getpid())
	cmd := exec.Command("sleep", "5")
	if err := startOn(cmd, ServerCPU); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if got := cpusAllowed(cmd.Process.Pid); got != "0" {
		t.Errorf("child on CPUs %q, want 0", got)
	}
	if after := cpusAllowed(os.Getpid()); after != before {
		t.Errorf("the test process's CPUs went from %q to %q", before, after)
	}
}

func TestTableHasIstiodColumn(t *testing.T) {
	rep := &Report{Scenario: Scenario{Services: 200, Proxies: 300, HTTPEntries: true}, Results: []Result{
		{Server: Ours, Mode: "sotw", NewService: Convergence{P99Ms: 100}, RSSPerProxyKB: 50},
		{Server: Istiod, Mode: "sotw", NewService: Convergence{P99Ms: 700}, RSSPerProxyKB: 1500},
	}}
	var b strings.Builder
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"istiod/ours", "700.00", "7.0x", "30.0x"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}
