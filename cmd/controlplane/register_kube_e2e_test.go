package main

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/librarymesh/controlplane/certauthority"
	"github.com/librarymesh/controlplane/internal/kubetest"
	"github.com/librarymesh/controlplane/registry/register"
	"github.com/librarymesh/controlplane/vmbundle"
)

// TestKubeCommands runs `register`, `deregister` and `vm bundle` against a
// real kube-apiserver.
func TestKubeCommands(t *testing.T) {
	e := kubetest.New(t)
	t.Run("register", func(t *testing.T) { registerShapes(t, e) })
	t.Run("vm bundle", func(t *testing.T) { bundleFromSecret(t, e) })
}

// registerShapes: for each shape the first run creates the objects, the
// second changes nothing, deregister removes them.
func registerShapes(t *testing.T, e *kubetest.Env) {
	cases := []struct{ as, ns, kinds string }{
		{"serviceentry", "vm-se", "Service ServiceEntry"},
		{"service", "vm-svc", "EndpointSlice Service"},
		{"workloadentry", "vm-we", "WorkloadEntry"},
	}
	for _, tc := range cases {
		t.Run(tc.as, func(t *testing.T) {
			createNS(t, e, tc.ns)
			args := []string{"register", vmName, "192.0.2.8", "5432:tcp/TCP", "--namespace", tc.ns,
				"--service-account", "postgres", "--as", tc.as, "--kubeconfig", e.KubeconfigPath}
			out := runCP(t, args...)
			if got := registered(t, e, tc.ns); got != tc.kinds {
				t.Fatalf("after register: %q, want %q\n%s", got, tc.kinds, out)
			}
			if strings.Count(out, " created") != len(strings.Fields(tc.kinds)) {
				t.Errorf("first run does not report each object created:\n%s", out)
			}
			before := versions(t, e, tc.ns)
			out = runCP(t, args...)
			if strings.Contains(out, "created") || strings.Contains(out, "updated") {
				t.Errorf("second run changed something:\n%s", out)
			}
			if after := versions(t, e, tc.ns); after != before {
				t.Errorf("second run changed resourceVersions: %s -> %s", before, after)
			}
			runCP(t, "deregister", vmName, "--namespace", tc.ns, "--kubeconfig", e.KubeconfigPath)
			if got := registered(t, e, tc.ns); got != "" {
				t.Errorf("left after deregister: %s", got)
			}
		})
	}
}

// bundleFromSecret writes a bundle whose root comes from the CA Secret.
func bundleFromSecret(t *testing.T, e *kubetest.Env) {
	createNS(t, e, "istio-system")
	dir := filepath.Join(t.TempDir(), "bundle")
	runCP(t, "vm", "bundle", "--name", vmName, "--namespace", "default", "--service-account", "postgres",
		"--ip", "192.0.2.8", "--address", "192.0.2.1:15012", "-o", dir, "--kubeconfig", e.KubeconfigPath)
	sec, err := e.Kube.CoreV1().Secrets("istio-system").Get(t.Context(), certauthority.SelfSignedSecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("CA Secret: %v", err)
	}
	got, err := os.ReadFile(filepath.Join(dir, vmbundle.FileRootCert))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bytes.TrimSpace(got), bytes.TrimSpace(sec.Data[certauthority.CACertFile])) {
		t.Errorf("bundle root is not the CA Secret's %s:\n%s", certauthority.CACertFile, got)
	}
	if _, err := os.Stat(filepath.Join(dir, vmbundle.FileToken)); err != nil {
		t.Error(err)
	}
}

func createNS(t *testing.T, e *kubetest.Env, ns string) {
	t.Helper()
	_, err := e.Kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// registered lists the kinds of register-made objects named after the VM.
func registered(t *testing.T, e *kubetest.Env, ns string) string {
	t.Helper()
	var kinds []string
	for _, o := range managed(t, e, ns) {
		kinds = append(kinds, strings.Split(o, "@")[0])
	}
	return strings.Join(kinds, " ")
}

func versions(t *testing.T, e *kubetest.Env, ns string) string {
	return strings.Join(managed(t, e, ns), " ")
}

// managed returns KIND@RESOURCEVERSION of each register-made object.
func managed(t *testing.T, e *kubetest.Env, ns string) []string {
	t.Helper()
	ctx, opts := t.Context(), metav1.ListOptions{LabelSelector: register.ManagedByLabel + "=" + register.ManagedByValue}
	var out []string
	add := func(kind, name, rv string) {
		if name == vmName {
			out = append(out, kind+"@"+rv)
		}
	}
	svcs, err := e.Kube.CoreV1().Services(ns).List(ctx, opts)
	mustList(t, err)
	for _, o := range svcs.Items {
		add("Service", o.Name, o.ResourceVersion)
	}
	eps, err := e.Kube.DiscoveryV1().EndpointSlices(ns).List(ctx, opts)
	mustList(t, err)
	for _, o := range eps.Items {
		add("EndpointSlice", o.Name, o.ResourceVersion)
	}
	ses, err := e.Istio.NetworkingV1().ServiceEntries(ns).List(ctx, opts)
	mustList(t, err)
	for _, o := range ses.Items {
		add("ServiceEntry", o.Name, o.ResourceVersion)
	}
	wes, err := e.Istio.NetworkingV1().WorkloadEntries(ns).List(ctx, opts)
	mustList(t, err)
	for _, o := range wes.Items {
		add("WorkloadEntry", o.Name, o.ResourceVersion)
	}
	sort.Strings(out)
	return out
}

func mustList(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("list: %v", err)
	}
}
