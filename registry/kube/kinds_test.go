package kube_test

import (
	"testing"

	networkingapi "istio.io/api/networking/v1alpha3"
	securityapi "istio.io/api/security/v1beta1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	networkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/librarymesh/controlplane/registry"
)

// Pods, WorkloadEntries, DestinationRules and PeerAuthentications reach the
// store through their informers too.
func TestOtherKindsReachTheStore(t *testing.T) {
	e := env.Need(t)
	ns := newNamespace(t, e)
	f := startSource(t, e, ns)
	ctx := t.Context()
	createPod(t, ns, "web-0", "10.1.4.1")
	we := &networkingv1.WorkloadEntry{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db-vm-1"},
		Spec: networkingapi.WorkloadEntry{Address: "10.2.4.1", Labels: map[string]string{"app": "db"}, ServiceAccount: "db-vm"}}
	if _, err := e.Istio.NetworkingV1().WorkloadEntries(ns).Create(ctx, we, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	se := makeServiceEntry(ns, "db", "db.example.internal", 5432)
	se.Spec.Endpoints = nil
	se.Spec.WorkloadSelector = &networkingapi.WorkloadSelector{Labels: map[string]string{"app": "db"}}
	if _, err := e.Istio.NetworkingV1().ServiceEntries(ns).Create(ctx, se, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dr := &networkingv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db"},
		Spec: networkingapi.DestinationRule{Host: "db.example.internal", TrafficPolicy: &networkingapi.TrafficPolicy{
			Tls: &networkingapi.ClientTLSSettings{Mode: networkingapi.ClientTLSSettings_ISTIO_MUTUAL}}}}
	if _, err := e.Istio.NetworkingV1().DestinationRules(ns).Create(ctx, dr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pa := &securityv1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "strict"},
		Spec: securityapi.PeerAuthentication{Mtls: &securityapi.PeerAuthentication_MutualTLS{
			Mode: securityapi.PeerAuthentication_MutualTLS_STRICT}}}
	if _, err := e.Istio.SecurityV1().PeerAuthentications(ns).Create(ctx, pa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	v := f.waitView(t, "all kinds", func(v registry.View) bool {
		return v.WorkloadByIP("10.1.4.1") != nil && len(v.Endpoints("db.example.internal")) == 1 &&
			len(v.DestinationRules()) == 1 && len(v.PeerAuthentications()) == 1
	})
	if w := v.WorkloadByIP("10.1.4.1"); w.Kind != registry.KindPod || w.ServiceAccount != "web" || w.Labels["app"] != "web" {
		t.Errorf("pod workload = %+v", w)
	}
	if ep := v.Endpoints("db.example.internal")[0]; ep.Address != "10.2.4.1" || ep.ServiceAccount != "db-vm" {
		t.Errorf("selected WorkloadEntry endpoint = %+v", ep)
	}
	if got := v.DestinationRules()[0]; got.Name != "db" || got.TLS().Mode != registry.ClientTLSIstioMutual {
		t.Errorf("DestinationRule = %+v", got)
	}
	if got := v.PeerAuthentications()[0]; got.Name != "strict" || got.Mode != registry.MTLSStrict {
		t.Errorf("PeerAuthentication = %+v", got)
	}
	if err := e.Kube.CoreV1().Pods(ns).Delete(ctx, "web-0", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	f.waitView(t, "pod deleted", func(v registry.View) bool { return v.WorkloadByIP("10.1.4.1") == nil })
	if err := e.Istio.NetworkingV1().WorkloadEntries(ns).Delete(ctx, "db-vm-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitView(t, "WorkloadEntry deleted", func(v registry.View) bool { return len(v.Endpoints("db.example.internal")) == 0 })
}

// createPod creates a ready pod and sets its IP, as a kubelet would.
func createPod(t *testing.T, ns, name, ip string) {
	t.Helper()
	ctx := t.Context()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{ServiceAccountName: "web", Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app"}}}}
	created, err := env.Kube.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created.Status.Phase = corev1.PodRunning
	created.Status.PodIP = ip
	created.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	created.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	if _, err := env.Kube.CoreV1().Pods(ns).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("set pod status: %v", err)
	}
}

// A WorkloadGroup created as v1alpha3 reaches the store through the v1
// informer, with its UID (the owner of auto-registered WorkloadEntries).
func TestWorkloadGroupReachesTheStore(t *testing.T) {
	e := env.Need(t)
	ns := newNamespace(t, e)
	f := startSource(t, e, ns)
	wg := &networkingv1alpha3.WorkloadGroup{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db"},
		Spec: networkingapi.WorkloadGroup{
			Metadata: &networkingapi.WorkloadGroup_ObjectMeta{Labels: map[string]string{"app": "db"}},
			Template: &networkingapi.WorkloadEntry{ServiceAccount: "db-vm", Ports: map[string]uint32{"tcp": 5432}},
			Probe: &networkingapi.ReadinessProbe{FailureThreshold: 2, HealthCheckMethod: &networkingapi.ReadinessProbe_Exec{
				Exec: &networkingapi.ExecHealthCheckConfig{Command: []string{"pg_isready"}}}},
		}}
	created, err := e.Istio.NetworkingV1alpha3().WorkloadGroups(ns).Create(t.Context(), wg, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v := f.waitView(t, "WorkloadGroup", func(v registry.View) bool { return v.WorkloadGroup(ns, "db") != nil })
	g := v.WorkloadGroup(ns, "db")
	if g.UID != string(created.UID) || g.Template.ServiceAccount != "db-vm" || g.Labels["app"] != "db" ||
		g.Probe == nil || g.Probe.Exec == nil || g.Probe.Exec.Command[0] != "pg_isready" || g.Probe.FailureThreshold != 2 {
		t.Errorf("group = %+v (uid %s)", g, created.UID)
	}
	if err := e.Istio.NetworkingV1alpha3().WorkloadGroups(ns).Delete(t.Context(), "db", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitView(t, "WorkloadGroup deleted", func(v registry.View) bool { return v.WorkloadGroup(ns, "db") == nil })
}
