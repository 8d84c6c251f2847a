package kube

import (
	"os"
	"testing"

	"github.com/librarymesh/controlplane/internal/kubetest"
)

// env is one kube-apiserver for the package.
var env *kubetest.Env

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m, &env)) }
