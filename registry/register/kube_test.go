package register

import (
	"context"
	"os"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/librarymesh/controlplane/internal/kubetest"
)

var env *kubetest.Env

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m, &env)) }

// Each shape against a real kube-apiserver: created, a second run changes
// nothing (resourceVersions stay), an IP change updates in place, and
// deregister removes everything.
func TestKubeWriterShapes(t *testing.T) {
	e := env.Need(t)
	w, err := NewKubeWriterForConfig(e.Config, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ as, ns, kinds, ipChange string }{
		{"serviceentry", "vm-se", "Service:created,ServiceEntry:created", "Service:unchanged,ServiceEntry:updated"},
		{"service", "vm-svc", "Service:created,EndpointSlice:created", "Service:unchanged,EndpointSlice:updated"},
		{"workloadentry", "vm-we", "WorkloadEntry:created", "WorkloadEntry:updated"},
	}
	for _, tc := range cases {
		t.Run(tc.as, func(t *testing.T) {
			ctx := t.Context()
			createNamespace(t, e, tc.ns)
			a := postgresArgs(tc.as)
			a.Namespace = tc.ns
			a.Positional[1] = "192.0.2.8" // Kubernetes refuses loopback endpoints; never dialed
			vm := mustParse(t, a)
			cs, err := Register(ctx, w, vm)
			if err != nil || actions(cs) != tc.kinds {
				t.Fatalf("first run = %s, %v; want %s", actions(cs), err, tc.kinds)
			}
			before := resourceVersions(t, e, tc.ns)
			cs, err = Register(ctx, w, vm)
			if want := strings.ReplaceAll(tc.kinds, "created", "unchanged"); err != nil || actions(cs) != want {
				t.Fatalf("second run = %s, %v; want %s", actions(cs), err, want)
			}
			if after := resourceVersions(t, e, tc.ns); after != before {
				t.Errorf("second run changed objects: %s -> %s", before, after)
			}
			vm.IP = "192.0.2.9"
			cs, err = Register(ctx, w, vm)
			if err != nil {
				t.Fatal(err)
			}
			if actions(cs) != tc.ipChange {
				t.Errorf("IP change = %s, want %s", actions(cs), tc.ipChange)
			}
			checkKubeObjects(t, e, tc.ns, "192.0.2.9")
			cs, err = Deregister(ctx, w, tc.ns, vm.Name)
			if want := strings.ReplaceAll(tc.kinds, "created", "deleted"); err != nil || actions(cs) != want {
				t.Fatalf("deregister = %s, %v; want %s", actions(cs), err, want)
			}
			if rv := resourceVersions(t, e, tc.ns); rv != "" {
				t.Errorf("objects left after deregister: %s", rv)
			}
		})
	}
}

func TestKubeWriterRefusesLoopbackEndpointSliceBeforeWriting(t *testing.T) {
	e := env.Need(t)
	w, err := NewKubeWriterForConfig(e.Config, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	createNamespace(t, e, "vm-loop")
	a := postgresArgs("service")
	a.Namespace = "vm-loop"
	_, err = Register(t.Context(), w, mustParse(t, a))
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("err = %v, want a loopback error", err)
	}
	if rv := resourceVersions(t, e, "vm-loop"); rv != "" {
		t.Errorf("objects written despite the error: %s", rv)
	}
}

// Changing --as replaces the old shape's objects; an object register did not
// make is never touched.
func TestKubeWriterShapeChangeAndForeignObjects(t *testing.T) {
	e := env.Need(t)
	ctx := t.Context()
	w, err := NewKubeWriterForConfig(e.Config, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	createNamespace(t, e, "vm-change")
	a := postgresArgs("service")
	a.Namespace = "vm-change"
	a.Positional[1] = "192.0.2.8"
	if _, err := Register(ctx, w, mustParse(t, a)); err != nil {
		t.Fatal(err)
	}
	a.As = "serviceentry"
	cs, err := Register(ctx, w, mustParse(t, a))
	if err != nil || actions(cs) != "Service:unchanged,ServiceEntry:created,EndpointSlice:deleted" {
		t.Fatalf("shape change = %s, %v", actions(cs), err)
	}
	foreign := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "mine", Namespace: "vm-change"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
	if _, err := e.Kube.CoreV1().Services("vm-change").Create(ctx, foreign, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	a.Positional[0] = "mine"
	if _, err := Register(ctx, w, mustParse(t, a)); err == nil || !strings.Contains(err.Error(), "not made by register") {
		t.Errorf("register over a foreign Service: err = %v", err)
	}
	cs, err = Deregister(ctx, w, "vm-change", "mine")
	if err != nil || actions(cs) != "Service:skipped" {
		t.Errorf("deregister of a foreign Service = %s, %v", actions(cs), err)
	}
	if _, err := e.Kube.CoreV1().Services("vm-change").Get(ctx, "mine", metav1.GetOptions{}); err != nil {
		t.Errorf("foreign Service is gone: %v", err)
	}
}

func createNamespace(t *testing.T, e *kubetest.Env, ns string) {
	t.Helper()
	_, err := e.Kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// resourceVersions lists the register-made objects of a namespace with their versions.
func resourceVersions(t *testing.T, e *kubetest.Env, ns string) string {
	t.Helper()
	ctx, opts := t.Context(), metav1.ListOptions{LabelSelector: ManagedByLabel + "=" + ManagedByValue}
	var out []string
	svcs, err := e.Kube.CoreV1().Services(ns).List(ctx, opts)
	must(t, err)
	for _, o := range svcs.Items {
		out = append(out, "Service/"+o.Name+"@"+o.ResourceVersion)
	}
	eps, err := e.Kube.DiscoveryV1().EndpointSlices(ns).List(ctx, opts)
	must(t, err)
	for _, o := range eps.Items {
		out = append(out, "EndpointSlice/"+o.Name+"@"+o.ResourceVersion)
	}
	ses, err := e.Istio.NetworkingV1().ServiceEntries(ns).List(ctx, opts)
	must(t, err)
	for _, o := range ses.Items {
		out = append(out, "ServiceEntry/"+o.Name+"@"+o.ResourceVersion)
	}
	wes, err := e.Istio.NetworkingV1().WorkloadEntries(ns).List(ctx, opts)
	must(t, err)
	for _, o := range wes.Items {
		out = append(out, "WorkloadEntry/"+o.Name+"@"+o.ResourceVersion)
	}
	return strings.Join(out, ",")
}

func checkKubeObjects(t *testing.T, e *kubetest.Env, ns, ip string) {
	t.Helper()
	ctx := context.Background()
	var objs []Object
	if s, err := e.Kube.CoreV1().Services(ns).Get(ctx, "postgres-1-vm", metav1.GetOptions{}); err == nil {
		if s.Spec.ClusterIP == "" {
			t.Error("Service has no cluster IP, so its name would not resolve")
		}
		objs = append(objs, s)
	}
	if s, err := e.Kube.DiscoveryV1().EndpointSlices(ns).Get(ctx, "postgres-1-vm", metav1.GetOptions{}); err == nil {
		objs = append(objs, s)
	}
	if s, err := e.Istio.NetworkingV1().ServiceEntries(ns).Get(ctx, "postgres-1-vm", metav1.GetOptions{}); err == nil {
		objs = append(objs, s)
	}
	if s, err := e.Istio.NetworkingV1().WorkloadEntries(ns).Get(ctx, "postgres-1-vm", metav1.GetOptions{}); err == nil {
		objs = append(objs, s)
	}
	if len(objs) == 0 {
		t.Fatal("no objects found")
	}
	checkObjects(t, objs, ip)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
