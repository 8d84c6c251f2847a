package kube_test

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/librarymesh/controlplane/meshname"
	"github.com/librarymesh/controlplane/registry"
)

// TestPodSidecarFromTheAPIServer: a pod read from a real API server has a
// sidecar (TLSMode istio) once Istio's injector annotation is on it, and
// not once its tlsMode label says disabled (the label wins).
func TestPodSidecarFromTheAPIServer(t *testing.T) {
	e := env.Need(t)
	ns := newNamespace(t, e)
	f := startSource(t, e, ns)
	createPod(t, ns, "web-0", "10.1.5.1")
	tlsMode := func(want string) func(registry.View) bool {
		return func(v registry.View) bool {
			w := v.WorkloadByIP("10.1.5.1")
			return w != nil && w.TLSMode == want
		}
	}
	f.waitView(t, "the pod without a sidecar", tlsMode(""))
	patch := func(body string) {
		t.Helper()
		if _, err := e.Kube.CoreV1().Pods(ns).Patch(t.Context(), "web-0", types.MergePatchType, []byte(body), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	patch(`{"metadata":{"annotations":{"` + meshname.SidecarStatusAnnotation + `":"{\"containers\":[\"istio-proxy\"]}"}}}`)
	f.waitView(t, "the injected pod to have a sidecar", tlsMode(meshname.TLSModeIstio))
	patch(`{"metadata":{"labels":{"` + meshname.TLSModeLabel + `":"disabled"}}}`)
	f.waitView(t, "the label to win over the annotation", tlsMode(""))
}
