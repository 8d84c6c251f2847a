package main

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	networkingapi "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	networkingv1beta1 "istio.io/client-go/pkg/apis/networking/v1beta1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/librarymesh/controlplane/internal/e2e"
	"github.com/librarymesh/controlplane/internal/kubetest"
)

// The Kubernetes end-to-end tests watch namespace "test". The inventory
// Service's addresses are example data that nothing dials; the echo
// ServiceEntry's endpoint is a real gRPC backend on loopback.
const (
	kubeNS        = "test"
	invHost       = "inventory.test.svc.cluster.local"
	invCluster    = "outbound|8080||" + invHost
	echoCluster   = "outbound|7070||" + echoHost
	sidecarNode   = "sidecar~10.8.0.5~inventory-0.test~test.svc.cluster.local"
	sidecar2Node  = "sidecar~10.8.0.6~inventory-1.test~test.svc.cluster.local"
	grpcNodeOther = "sidecar~127.0.0.2~client-2.test~test.svc.cluster.local"
)

// kubeServe starts a kube-apiserver of the test's own, the namespaces and
// inventory pods, and `controlplane serve --kubeconfig` watching it (with
// extra flags).
func kubeServe(t *testing.T, extra ...string) (*kubetest.Env, *e2e.Server) {
	t.Helper()
	e := kubetest.New(t)
	for _, ns := range []string{kubeNS, "istio-system"} {
		if _, err := e.Kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create namespace %s: %v", ns, err)
		}
	}
	createInventoryPod(t, e, "inventory-0", "10.8.0.5")
	createInventoryPod(t, e, "inventory-1", "10.8.0.6")
	begin := time.Now()
	srv := e2e.Serve(t, append([]string{"--kubeconfig", e.KubeconfigPath, "--leader-elect=false", "--debounce", "100ms"}, extra...)...)
	t.Logf("kube-apiserver started in %s, controlplane ready in %s", e.StartDuration.Round(time.Millisecond), time.Since(begin).Round(time.Millisecond))
	return e, srv
}

// createInventoryPod creates a running, ready pod with an IP, as a kubelet would.
func createInventoryPod(t *testing.T, e *kubetest.Env, name, ip string) {
	t.Helper()
	ctx := t.Context()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: kubeNS, Name: name, Labels: map[string]string{"app": "inventory"}},
		Spec: corev1.PodSpec{ServiceAccountName: "inventory", Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app"}}}}
	created, err := e.Kube.CoreV1().Pods(kubeNS).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s: %v", name, err)
	}
	created.Status.Phase = corev1.PodRunning
	created.Status.PodIP = ip
	created.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	created.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	if _, err := e.Kube.CoreV1().Pods(kubeNS).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("set status of pod %s: %v", name, err)
	}
}

// createInventory creates the inventory Service (HTTP 8080) and its
// EndpointSlice with addrs.
func createInventory(t *testing.T, e *kubetest.Env, addrs ...string) {
	t.Helper()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: kubeNS, Name: "inventory"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "inventory"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 8080, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}}}
	if _, err := e.Kube.CoreV1().Services(kubeNS).Create(t.Context(), svc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create service: %v", err)
	}
	if _, err := e.Kube.DiscoveryV1().EndpointSlices(kubeNS).Create(t.Context(), inventorySlice(addrs...), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create endpointslice: %v", err)
	}
}

func inventorySlice(addrs ...string) *discoveryv1.EndpointSlice {
	eps := make([]discoveryv1.Endpoint, len(addrs))
	for i, a := range addrs {
		eps[i] = discoveryv1.Endpoint{Addresses: []string{a}}
	}
	name, port := "http", int32(8080)
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: kubeNS, Name: "inventory-abcde",
			Labels: map[string]string{discoveryv1.LabelServiceName: "inventory"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   eps,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port}},
	}
}

// echoSpec is a STATIC mesh-internal entry for host on gRPC port 7070 with
// one endpoint, 127.0.0.1:port.
func echoSpec(host string, port int, weight uint32) networkingapi.ServiceEntry {
	return networkingapi.ServiceEntry{
		Hosts:      []string{host},
		Location:   networkingapi.ServiceEntry_MESH_INTERNAL,
		Resolution: networkingapi.ServiceEntry_STATIC,
		Ports:      []*networkingapi.ServicePort{{Number: 7070, Name: "grpc", Protocol: "GRPC"}},
		Endpoints: []*networkingapi.WorkloadEntry{{Address: "127.0.0.1", Ports: map[string]uint32{"grpc": uint32(port)},
			Labels: map[string]string{"app": "echo"}, Weight: weight}},
	}
}

func createEcho(t *testing.T, e *kubetest.Env, port int) {
	t.Helper()
	se := &networkingv1.ServiceEntry{ObjectMeta: metav1.ObjectMeta{Namespace: kubeNS, Name: "echo"}, Spec: echoSpec(echoHost, port, 0)}
	if _, err := e.Istio.NetworkingV1().ServiceEntries(kubeNS).Create(t.Context(), se, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create v1 ServiceEntry: %v", err)
	}
}

func createEchoV1beta1(t *testing.T, e *kubetest.Env, port int) {
	t.Helper()
	se := &networkingv1beta1.ServiceEntry{ObjectMeta: metav1.ObjectMeta{Namespace: kubeNS, Name: "echo"}, Spec: echoSpec(echoHost, port, 0)}
	if _, err := e.Istio.NetworkingV1beta1().ServiceEntries(kubeNS).Create(t.Context(), se, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create v1beta1 ServiceEntry: %v", err)
	}
}

// patchEcho points the echo entry's endpoint at port with weight, by a merge
// patch (no read, no conflicts).
func patchEcho(t *testing.T, e *kubetest.Env, port int, weight uint32) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"endpoints":[{"address":"127.0.0.1","ports":{"grpc":%d},"labels":{"app":"echo"},"weight":%d}]}}`, port, weight)
	if _, err := e.Istio.NetworkingV1().ServiceEntries(kubeNS).Patch(t.Context(), "echo", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("patch ServiceEntry echo (weight %d): %v", weight, err)
	}
}

// reaches waits until cc's RPCs are answered by the backend reporting want.
func reaches(t *testing.T, what string, cc *grpc.ClientConn, want healthpb.HealthCheckResponse_ServingStatus) time.Duration {
	t.Helper()
	begin := time.Now()
	e2e.Eventually(t, what, 20*time.Second, func() bool {
		got, err := e2e.Which(cc)
		return err == nil && got == want
	})
	return time.Since(begin)
}

// echoReady creates the inventory Service (two endpoints) and the echo entry
// on backend (a HealthBackend reporting SERVING), and waits until a pod
// sidecar has both and a grpc-go client's RPCs reach backend (what names
// that wait). It returns the sidecar, its state then and the client.
func echoReady(t *testing.T, e *kubetest.Env, srv *e2e.Server, backend int, what string) (*adsWatcher, adsState, *grpc.ClientConn) {
	t.Helper()
	createInventory(t, e, "10.8.0.5", "10.8.0.6")
	createEcho(t, e, backend)
	side := watchADS(t, srv.GRPCAddr, sidecarNode)
	state := side.waitState(t, "the sidecar's config", 20*time.Second, hasEcho(backend, "10.8.0.5:8080", "10.8.0.6:8080"))
	cc := e2e.ProxylessClient(t, srv.GRPCAddr, grpcNode, kubeNS, echoTarget)
	reaches(t, what, cc, backendServing)
	return side, state, cc
}
