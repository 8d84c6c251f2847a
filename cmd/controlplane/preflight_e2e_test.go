package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/librarymesh/controlplane/internal/e2e"
	"github.com/librarymesh/controlplane/internal/kubetest"
)

// On a bare cluster (a fresh kube-apiserver: no istio-system, no
// controlplane RBAC) `serve --kubeconfig` exits within 5 s with an error
// that names the missing namespace, how to create it and --ca-namespace,
// instead of waiting for a CA root no one will create.
func TestServeOnBareClusterSaysWhatIsMissing(t *testing.T) {
	e := kubetest.New(t)
	e2e.Binary(t) // built before the clock starts
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"default namespace", nil,
			[]string{`namespace "istio-system" does not exist`, "kubectl create namespace istio-system", "--ca-namespace"}},
		{"leader election off", []string{"--leader-elect=false"},
			[]string{`namespace "istio-system" does not exist`, "--ca-namespace"}},
		{"another namespace", []string{"--ca-namespace", "mesh-system"},
			[]string{`namespace "mesh-system" does not exist`, "kubectl create namespace mesh-system"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			start := time.Now()
			args := append([]string{"serve", "--kubeconfig", e.KubeconfigPath, "--grpc-addr", "127.0.0.1:0",
				"--secure-grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--data-dir", t.TempDir()}, tt.args...)
			_, err := e2e.Run(ctx, t, args...)
			took := time.Since(start)
			if err == nil {
				t.Fatal("serve succeeded on a cluster without its namespace")
			}
			if took > 5*time.Second {
				t.Errorf("serve took %s to give up, want under 5 s", took.Round(time.Millisecond))
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
			t.Logf("exited after %s: %v", took.Round(time.Millisecond), err)
		})
	}
}
