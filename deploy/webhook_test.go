package deploy_test

import (
	"slices"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/librarymesh/controlplane/inject"
	injectkube "github.com/librarymesh/controlplane/inject/kube"
	"github.com/librarymesh/controlplane/internal/kubetest"
)

// TestRenderedWebhook checks the sidecar injector's MutatingWebhookConfiguration
// as rendered: Istio's four default-revision selectors, each calling the
// controlplane Service on the port the Deployment serves the webhook on,
// for pod creation only, failing closed; and the ClusterRole lets the server
// set its caBundle. It needs no API server.
func TestRenderedWebhook(t *testing.T) {
	objs := render(t, ".")
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	find(t, objs, "MutatingWebhookConfiguration", injectkube.DefaultWebhookConfig, &mwc)
	var d appsv1.Deployment
	find(t, objs, "Deployment", "controlplane", &d)
	var svc corev1.Service
	find(t, objs, "Service", "controlplane", &svc)
	wantNames := []string{"rev.namespace.sidecar-injector.istio.io", "rev.object.sidecar-injector.istio.io",
		"namespace.sidecar-injector.istio.io", "object.sidecar-injector.istio.io"}
	var names []string
	for _, w := range mwc.Webhooks {
		names = append(names, w.Name)
		checkWebhook(t, w, svc, d.Spec.Template.Spec.Containers[0])
	}
	if !slices.Equal(names, wantNames) {
		t.Errorf("webhooks %v, want Istio's %v", names, wantNames)
	}
	var cr rbacv1.ClusterRole
	find(t, objs, "ClusterRole", "controlplane", &cr)
	if !grants(cr.Rules, "admissionregistration.k8s.io", "mutatingwebhookconfigurations", injectkube.DefaultWebhookConfig, "get", "update") {
		t.Errorf("ClusterRole does not grant get and update on MutatingWebhookConfiguration %s", injectkube.DefaultWebhookConfig)
	}
}

func checkWebhook(t *testing.T, w admissionregistrationv1.MutatingWebhook, svc corev1.Service, c corev1.Container) {
	t.Helper()
	ref := w.ClientConfig.Service
	if ref == nil || ref.Name != svc.Name || ref.Namespace != "istio-system" || ref.Path == nil || *ref.Path != inject.Path || ref.Port == nil {
		t.Fatalf("%s: clientConfig %+v, want Service %s/istio-system path %s", w.Name, w.ClientConfig, svc.Name, inject.Path)
	}
	if !servicePortReaches(svc, c, *ref.Port, "https-webhook", 15017) {
		t.Errorf("%s: Service port %d does not lead to the container's https-webhook port 15017", w.Name, *ref.Port)
	}
	if len(w.ClientConfig.CABundle) != 0 {
		t.Errorf("%s: caBundle is set in the manifest; the server sets it", w.Name)
	}
	checks := []struct {
		what string
		ok   bool
	}{
		{"failurePolicy Fail", w.FailurePolicy != nil && *w.FailurePolicy == admissionregistrationv1.Fail},
		{"sideEffects None", w.SideEffects != nil && *w.SideEffects == admissionregistrationv1.SideEffectClassNone},
		{"admissionReviewVersions [v1]", slices.Equal(w.AdmissionReviewVersions, []string{"v1"})},
		{"rules: CREATE of v1 pods only", len(w.Rules) == 1 && slices.Equal(w.Rules[0].Operations, []admissionregistrationv1.OperationType{admissionregistrationv1.Create}) &&
			slices.Equal(w.Rules[0].Resources, []string{"pods"}) && slices.Equal(w.Rules[0].APIGroups, []string{""})},
		{"pods labelled sidecar.istio.io/inject=false never sent", excludesOptOut(w.ObjectSelector)},
	}
	for _, ch := range checks {
		if !ch.ok {
			t.Errorf("%s: want %s", w.Name, ch.what)
		}
	}
}

// servicePortReaches reports whether svc's port leads to c's port name/number.
func servicePortReaches(svc corev1.Service, c corev1.Container, port int32, name string, number int32) bool {
	for _, p := range svc.Spec.Ports {
		if p.Port == port && (p.TargetPort.StrVal == name || p.TargetPort.IntVal == number) {
			return slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == name && cp.ContainerPort == number })
		}
	}
	return false
}

// excludesOptOut reports whether the selector refuses inject=false, either
// with NotIn [false] or by requiring In [true].
func excludesOptOut(s *metav1.LabelSelector) bool {
	if s == nil {
		return false
	}
	for _, e := range s.MatchExpressions {
		if e.Key != inject.InjectKey {
			continue
		}
		if e.Operator == metav1.LabelSelectorOpNotIn && slices.Equal(e.Values, []string{"false"}) ||
			e.Operator == metav1.LabelSelectorOpIn && slices.Equal(e.Values, []string{"true"}) {
			return true
		}
	}
	return false
}

func grants(rules []rbacv1.PolicyRule, group, resource, name string, verbs ...string) bool {
	for _, r := range rules {
		if slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) &&
			(len(r.ResourceNames) == 0 || slices.Contains(r.ResourceNames, name)) &&
			!slices.ContainsFunc(verbs, func(v string) bool { return !slices.Contains(r.Verbs, v) }) {
			return true
		}
	}
	return false
}

// applyWebhookConfig creates the rendered MutatingWebhookConfiguration
// (caBundle empty) unless it exists.
func applyWebhookConfig(t *testing.T, e *kubetest.Env) {
	t.Helper()
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	find(t, render(t, "."), "MutatingWebhookConfiguration", injectkube.DefaultWebhookConfig, &mwc)
	api := e.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations()
	if _, err := api.Get(t.Context(), mwc.Name, metav1.GetOptions{}); err == nil {
		return
	}
	if _, err := api.Create(t.Context(), &mwc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create MutatingWebhookConfiguration: %v", err)
	}
}

// waitCABundle waits until every webhook of the deployed configuration
// trusts root.
func waitCABundle(t *testing.T, e *kubetest.Env, root []byte, timeout time.Duration) {
	t.Helper()
	var last string
	waitFor(t, "caBundle of "+injectkube.DefaultWebhookConfig, timeout, func() bool {
		mwc, err := e.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(t.Context(), injectkube.DefaultWebhookConfig, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false
		}
		for _, w := range mwc.Webhooks {
			if string(w.ClientConfig.CABundle) != string(root) {
				last = w.Name + " has " + string(w.ClientConfig.CABundle)
				return false
			}
		}
		return true
	}, func() string { return "last seen: " + last })
}
