package kube_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	networkingapi "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/librarymesh/controlplane/registry"
	"github.com/librarymesh/controlplane/registry/autoregister"
	"github.com/librarymesh/controlplane/registry/kube"
)

const kubeGrace = 2 * time.Second

// replica is one control plane replica's auto-registration controller on
// the real API server, reading groups from the source's store.
func replica(t *testing.T, f *fixture, name string) *autoregister.Controller {
	t.Helper()
	b, err := kube.NewWorkloadEntries(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	c, err := autoregister.New(autoregister.Config{Backend: b, Instance: name, GracePeriod: kubeGrace,
		Groups: func(ns, n string) *registry.WorkloadGroup { return f.store.View().WorkloadGroup(ns, n) }})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestAutoRegisterKube: a VM's connection creates a real WorkloadEntry
// owned by its group with Istio's annotations; its health report sets the
// Healthy condition and the endpoint's health; a reconnect to another
// replica keeps the entry (and records that replica); the entry is deleted
// a grace period after the last connection; a manual entry of the same
// name is never touched.
func TestAutoRegisterKube(t *testing.T) {
	e := env.Need(t)
	ns := newNamespace(t, e)
	f := startSource(t, e, ns)
	ctx := t.Context()
	wg := &networkingv1.WorkloadGroup{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pg"},
		Spec: networkingapi.WorkloadGroup{Metadata: &networkingapi.WorkloadGroup_ObjectMeta{Labels: map[string]string{"app": "pg"}},
			Template: &networkingapi.WorkloadEntry{ServiceAccount: "postgres", Ports: map[string]uint32{"tcp": 5432}},
			Probe: &networkingapi.ReadinessProbe{HealthCheckMethod: &networkingapi.ReadinessProbe_TcpSocket{
				TcpSocket: &networkingapi.TCPHealthCheckConfig{Port: 5432}}}}}
	created, err := e.Istio.NetworkingV1().WorkloadGroups(ns).Create(ctx, wg, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f.waitView(t, "group", func(v registry.View) bool { return v.WorkloadGroup(ns, "pg") != nil })
	r1, r2 := replica(t, f, "replica-1"), replica(t, f, "replica-2")
	w := autoregister.Workload{ProxyID: "sidecar~10.0.5.1~vm-a." + ns, Group: "pg", Namespace: ns, IP: "10.0.5.1", ServiceAccount: "postgres"}
	s1, err := r1.Connect(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	we := getEntry(t, ns, "pg-10.0.5.1")
	if we.Annotations[autoregister.AnnotationGroup] != "pg" || we.Annotations[autoregister.AnnotationController] != "replica-1" ||
		we.Annotations[autoregister.AnnotationConnectedAt] == "" || we.Annotations[autoregister.AnnotationHealthChecks] != "true" ||
		len(we.OwnerReferences) != 1 || we.OwnerReferences[0].UID != created.UID || we.Spec.Labels["app"] != "pg" {
		t.Fatalf("entry = %+v", we.ObjectMeta)
	}
	if err := s1.Health(ctx, true, ""); err != nil {
		t.Fatal(err)
	}
	if c := getEntry(t, ns, "pg-10.0.5.1").Status.GetConditions(); len(c) != 1 || c[0].GetType() != "Healthy" || c[0].GetStatus() != "True" {
		t.Fatalf("conditions = %v", c)
	}
	f.waitView(t, "healthy workload", func(v registry.View) bool {
		wl := v.WorkloadByIP("10.0.5.1")
		return wl != nil && !wl.Unhealthy
	})
	// The VM moves to replica 2, then replica 1 sees its old connection close.
	s2, err := r2.Connect(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	s1.Close()
	time.Sleep(kubeGrace + time.Second)
	we = getEntry(t, ns, "pg-10.0.5.1")
	if we.Annotations[autoregister.AnnotationController] != "replica-2" || we.Annotations[autoregister.AnnotationDisconnectedAt] != "" {
		t.Fatalf("after the move to replica 2: %v", we.Annotations)
	}
	s2.Close()
	waitFor(t, "entry deleted after the grace period", func() bool {
		_, err := e.Istio.NetworkingV1().WorkloadEntries(ns).Get(ctx, "pg-10.0.5.1", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	manual := &networkingv1.WorkloadEntry{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pg-10.0.5.2"},
		Spec: networkingapi.WorkloadEntry{Address: "10.0.5.2", ServiceAccount: "postgres"}}
	if _, err := e.Istio.NetworkingV1().WorkloadEntries(ns).Create(ctx, manual, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	w.IP = "10.0.5.2"
	if _, err := r1.Connect(ctx, w); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("connect over a manual entry: %v, want AlreadyExists", err)
	}
	if got := getEntry(t, ns, "pg-10.0.5.2"); len(got.Annotations) != 0 {
		t.Errorf("manual entry touched: %v", got.Annotations)
	}
}

func getEntry(t *testing.T, ns, name string) *networkingv1.WorkloadEntry {
	t.Helper()
	we, err := env.Istio.NetworkingV1().WorkloadEntries(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return we
}
