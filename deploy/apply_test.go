package deploy_test

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"

	"github.com/librarymesh/controlplane/internal/kubetest"
)

// TestApply applies the base and both overlays, rendered with kustomize, to
// the real kube-apiserver (server-side apply, as `kubectl apply -k
// --server-side` does; no dry run) and reads every object back. The
// gateway overlay's Gateway and VirtualService go through the Istio CRDs
// from deploy/crds, which kubetest installs.
func TestApply(t *testing.T) {
	e := env.Need(t)
	for _, dir := range []string{".", "overlays/gateway", "overlays/loadbalancer"} {
		t.Run(dir, func(t *testing.T) {
			objs := render(t, dir)
			apply(t, e, objs)
			for _, o := range objs {
				t.Logf("accepted %s %s/%s", o.GetKind(), o.GetNamespace(), o.GetName())
			}
		})
	}
	gw, err := e.Istio.NetworkingV1().Gateways("istio-system").Get(t.Context(), "controlplane", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("gateway overlay: %v", err)
	}
	if tls := gw.Spec.GetServers()[0].GetTls(); tls.GetMode().String() != "PASSTHROUGH" {
		t.Errorf("Gateway TLS mode %s, want PASSTHROUGH", tls.GetMode())
	}
	vs, err := e.Istio.NetworkingV1().VirtualServices("istio-system").Get(t.Context(), "controlplane", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("gateway overlay: %v", err)
	}
	route := vs.Spec.GetTls()[0]
	if sni := route.GetMatch()[0].GetSniHosts(); len(sni) != 1 || sni[0] != "istiod.istio-system.svc" {
		t.Errorf("VirtualService SNI match %v, want istiod.istio-system.svc", sni)
	}
	if dst := route.GetRoute()[0].GetDestination(); dst.GetHost() != "controlplane.istio-system.svc.cluster.local" || dst.GetPort().GetNumber() != 15012 {
		t.Errorf("VirtualService routes to %s:%d", dst.GetHost(), dst.GetPort().GetNumber())
	}
}

// apply server-side applies objs in their rendered order (kustomize puts
// Namespaces and CRDs first) and fails on the first object refused.
func apply(t *testing.T, e *kubetest.Env, objs []*unstructured.Unstructured) {
	t.Helper()
	cfg := kubetest.JSONConfig(e.Config)
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(e.Kube.Discovery()))
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("%s %s: no API for it: %v", gvk, o.GetName(), err)
		}
		data, err := o.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if o.GetNamespace() != "" {
			ri = dyn.Resource(m.Resource).Namespace(o.GetNamespace())
		}
		force := true
		got, err := ri.Patch(t.Context(), o.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: "deploy-test", Force: &force, FieldValidation: "Strict"})
		if err != nil {
			t.Fatalf("apply %s %s/%s: %v", gvk.Kind, o.GetNamespace(), o.GetName(), err)
		}
		if got.GetUID() == "" {
			t.Fatalf("apply %s %s: no UID back", gvk.Kind, o.GetName())
		}
	}
}
