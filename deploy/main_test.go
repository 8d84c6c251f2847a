// Package deploy_test proves the manifests in deploy/: they render with
// kustomize, carry the security settings, are accepted by a real
// kube-apiserver, and their RBAC is exactly what `controlplane serve` needs.
package deploy_test

import (
	"os"
	"testing"

	"github.com/librarymesh/controlplane/internal/kubetest"
)

var env *kubetest.Env

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m, &env)) }
