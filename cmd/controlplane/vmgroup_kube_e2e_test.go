package main

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	networkingapi "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/librarymesh/controlplane/internal/e2e"
	"github.com/librarymesh/controlplane/internal/kubetest"
	"github.com/librarymesh/controlplane/registry/autoregister"
)

const kubeGroupCluster = "outbound|5432||pg.test.svc.cluster.local"

// TestVMGroupKubeMode is TestVMGroupFileMode's life of a VM against a real
// kube-apiserver: `vm bundle --group test/pg --kubeconfig` writes one
// bundle (root and reusable token from istio-ca-secret); its agent
// connects to `serve --kubeconfig` and within 2 s a pod sidecar's EDS holds
// the VM's IP, from a WorkloadEntry owned by the group with Istio's
// annotations; a second agent with another IP joins and both endpoints are
// served; a stopped agent's endpoint and WorkloadEntry are gone after the
// grace period; the manual WorkloadEntry is left as it was throughout.
func TestVMGroupKubeMode(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	lisA := listenLoopback(t, "127.0.0.2", 0)
	port := lisA.Addr().(*net.TCPAddr).Port
	listenLoopback(t, "127.0.0.3", port)
	e, srv := kubeServe(t, "--auto-register-grace-period", groupGrace.String())
	group, manual := createKubeGroup(t, e, port)
	root := t.TempDir()
	bundleDir := filepath.Join(root, "bundle")
	runCP(t, "vm", "bundle", "--group", kubeNS+"/pg", "--kubeconfig", e.KubeconfigPath, "--address", srv.SecureGRPCAddr, "-o", bundleDir)

	pod := openADS(t, srv.GRPCAddr)
	pod.request(t, sidecarNode, resourcev3.ClusterType)
	pod.request(t, sidecarNode, resourcev3.EndpointType, kubeGroupCluster)
	eds := &edsWatch{pod: pod, cluster: kubeGroupCluster}
	eds.wait(t, "the manual entry", 20*time.Second, map[string]corev3.HealthStatus{"127.0.0.9": corev3.HealthStatus_UNKNOWN})

	a := startGroupAgent(t, root, bundleDir, "127.0.0.2", "vm-a")
	eds.wait(t, "the first VM", 20*time.Second,
		map[string]corev3.HealthStatus{"127.0.0.9": corev3.HealthStatus_UNKNOWN, "127.0.0.2": anyHealth})
	inEDS := time.Now()
	a.waitLog(t, "registration stream open", 1, 5*time.Second)
	took := inEDS.Sub(logTime(t, a.Logs(), "registration stream open"))
	t.Logf("the first VM in the pod's EDS %s after its registration stream opened", took.Round(time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("the first VM reached the pod's EDS %s after it connected, want within 2 s", took)
	}
	we, err := e.Istio.NetworkingV1().WorkloadEntries(kubeNS).Get(t.Context(), "pg-127.0.0.2", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the first VM's WorkloadEntry: %v", err)
	}
	if we.Annotations[autoregister.AnnotationGroup] != "pg" || we.Annotations[autoregister.AnnotationConnectedAt] == "" ||
		len(we.OwnerReferences) != 1 || we.OwnerReferences[0].UID != group.UID || we.Spec.Address != "127.0.0.2" || we.Spec.Labels["app"] != "pg" {
		t.Errorf("WorkloadEntry pg-127.0.0.2 = annotations %v, owners %v, spec %v; want the group's, owned by it", we.Annotations, we.OwnerReferences, &we.Spec)
	}

	b := startGroupAgent(t, root, bundleDir, "127.0.0.3", "vm-b")
	eds.wait(t, "both VMs, healthy once probed", 20*time.Second, map[string]corev3.HealthStatus{
		"127.0.0.9": corev3.HealthStatus_UNKNOWN, "127.0.0.2": corev3.HealthStatus_UNKNOWN, "127.0.0.3": corev3.HealthStatus_UNKNOWN})

	b.stop()
	stopped := time.Now()
	eds.wait(t, "the stopped VM gone after the grace period", 20*time.Second, map[string]corev3.HealthStatus{
		"127.0.0.9": corev3.HealthStatus_UNKNOWN, "127.0.0.2": corev3.HealthStatus_UNKNOWN})
	gone := time.Since(stopped)
	t.Logf("the stopped VM left the pod's EDS %s after its agent stopped (grace %s)", gone.Round(10*time.Millisecond), groupGrace)
	if gone < groupGrace {
		t.Errorf("the stopped VM left EDS after %s, before the grace period (%s)", gone, groupGrace)
	}
	e2e.Eventually(t, "WorkloadEntry pg-127.0.0.3 to be deleted", 10*time.Second, func() bool {
		_, err := e.Istio.NetworkingV1().WorkloadEntries(kubeNS).Get(t.Context(), "pg-127.0.0.3", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	if _, err := e.Istio.NetworkingV1().WorkloadEntries(kubeNS).Get(t.Context(), "pg-127.0.0.2", metav1.GetOptions{}); err != nil {
		t.Errorf("the running VM's WorkloadEntry: %v", err)
	}
	after, err := e.Istio.NetworkingV1().WorkloadEntries(kubeNS).Get(t.Context(), "pg-manual", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the manual WorkloadEntry: %v", err)
	}
	if after.ResourceVersion != manual.ResourceVersion {
		t.Errorf("the manual WorkloadEntry was changed: resourceVersion %s -> %s, annotations %v", manual.ResourceVersion, after.ResourceVersion, after.Annotations)
	}
}

// createKubeGroup creates WorkloadGroup test/pg (tcpSocket probe on port,
// period 1s x threshold 2), the ServiceEntry selecting its VMs and a
// manual WorkloadEntry of the same service at 127.0.0.9.
func createKubeGroup(t *testing.T, e *kubetest.Env, port int) (group *networkingv1.WorkloadGroup, manual *networkingv1.WorkloadEntry) {
	t.Helper()
	ctx := t.Context()
	nw := e.Istio.NetworkingV1()
	labels := map[string]string{"app": "pg"}
	group, err := nw.WorkloadGroups(kubeNS).Create(ctx, &networkingv1.WorkloadGroup{ObjectMeta: metav1.ObjectMeta{Namespace: kubeNS, Name: "pg"},
		Spec: networkingapi.WorkloadGroup{Metadata: &networkingapi.WorkloadGroup_ObjectMeta{Labels: labels},
			Template: &networkingapi.WorkloadEntry{ServiceAccount: "postgres", Ports: map[string]uint32{"tcp": uint32(port)}},
			Probe: &networkingapi.ReadinessProbe{PeriodSeconds: 1, FailureThreshold: 2, HealthCheckMethod: &networkingapi.ReadinessProbe_TcpSocket{
				TcpSocket: &networkingapi.TCPHealthCheckConfig{Port: uint32(port)}}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create WorkloadGroup: %v", err)
	}
	if _, err := nw.ServiceEntries(kubeNS).Create(ctx, &networkingv1.ServiceEntry{ObjectMeta: metav1.ObjectMeta{Namespace: kubeNS, Name: "pg"},
		Spec: networkingapi.ServiceEntry{Hosts: []string{"pg.test.svc.cluster.local"}, Location: networkingapi.ServiceEntry_MESH_INTERNAL,
			Resolution: networkingapi.ServiceEntry_STATIC, Ports: []*networkingapi.ServicePort{{Number: 5432, Name: "tcp", Protocol: "TCP"}},
			WorkloadSelector: &networkingapi.WorkloadSelector{Labels: labels}}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create ServiceEntry: %v", err)
	}
	manual, err = nw.WorkloadEntries(kubeNS).Create(ctx, &networkingv1.WorkloadEntry{ObjectMeta: metav1.ObjectMeta{Namespace: kubeNS, Name: "pg-manual"},
		Spec: networkingapi.WorkloadEntry{Address: "127.0.0.9", Labels: labels, ServiceAccount: "postgres", Ports: map[string]uint32{"tcp": uint32(port)}}},
		metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create WorkloadEntry: %v", err)
	}
	return group, manual
}

// logTime is the time of the first line of logs (slog's text format)
// containing msg.
func logTime(t *testing.T, logs, msg string) time.Time {
	t.Helper()
	for _, line := range strings.Split(logs, "\n") {
		if !strings.Contains(line, msg) {
			continue
		}
		ts, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		return at
	}
	t.Fatalf("no log line with %q in\n%s", msg, logs)
	return time.Time{}
}

// TestVMGroupKubeReplicaDies: two replicas on a real kube-apiserver. A VM
// registers through replica A; A is SIGKILLed and the VM goes down with it
// (its agent stops before it could reconnect anywhere), so nobody marks
// the entry disconnected. Replica B sees A's heartbeat Lease go stale and,
// three grace periods after it, marks the entry disconnected and deletes
// it a grace period later: it leaves B's EDS too. The manual entry stays.
func TestVMGroupKubeReplicaDies(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	lis := listenLoopback(t, "127.0.0.2", 0)
	port := lis.Addr().(*net.TCPAddr).Port
	grace := groupGrace.String()
	e, srvA := kubeServe(t, "--auto-register-grace-period", grace, "--instance-id", "replica-a")
	srvB := e2e.Serve(t, "--kubeconfig", e.KubeconfigPath, "--leader-elect=false", "--debounce", "100ms",
		"--auto-register-grace-period", grace, "--instance-id", "replica-b")
	_, manual := createKubeGroup(t, e, port)
	root := t.TempDir()
	bundleDir := filepath.Join(root, "bundle")
	runCP(t, "vm", "bundle", "--group", kubeNS+"/pg", "--kubeconfig", e.KubeconfigPath, "--address", srvA.SecureGRPCAddr, "-o", bundleDir)

	pod := openADS(t, srvB.GRPCAddr)
	pod.request(t, sidecarNode, resourcev3.ClusterType)
	pod.request(t, sidecarNode, resourcev3.EndpointType, kubeGroupCluster)
	eds := &edsWatch{pod: pod, cluster: kubeGroupCluster}
	a := startGroupAgent(t, root, bundleDir, "127.0.0.2", "vm-a")
	eds.wait(t, "the VM registered through replica A, in replica B's EDS", 20*time.Second,
		map[string]corev3.HealthStatus{"127.0.0.9": corev3.HealthStatus_UNKNOWN, "127.0.0.2": anyHealth})
	we, err := e.Istio.NetworkingV1().WorkloadEntries(kubeNS).Get(t.Context(), "pg-127.0.0.2", metav1.GetOptions{})
	if err != nil || we.Annotations[autoregister.AnnotationController] != "replica-a" {
		t.Fatalf("WorkloadEntry pg-127.0.0.2: %v, %v; want it controlled by replica-a", err, we.GetAnnotations())
	}

	srvA.Kill()
	a.stop()
	died := time.Now()
	eds.wait(t, "the VM gone from replica B's EDS", 30*time.Second, map[string]corev3.HealthStatus{"127.0.0.9": corev3.HealthStatus_UNKNOWN})
	took := time.Since(died)
	t.Logf("the VM of the SIGKILLed replica left replica B's EDS %s after (grace %s: a stale heartbeat after 3 grace periods, then the grace period)", took.Round(10*time.Millisecond), groupGrace)
	if took < 3*groupGrace {
		t.Errorf("removed %s after the replica died, before its heartbeat could go stale (%s)", took, 3*groupGrace)
	}
	if _, err := e.Istio.NetworkingV1().WorkloadEntries(kubeNS).Get(t.Context(), "pg-127.0.0.2", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("WorkloadEntry pg-127.0.0.2 after the sweep: %v, want NotFound", err)
	}
	if !strings.Contains(srvB.Logs(), "its replica replica-a has had no heartbeat") {
		t.Errorf("replica B did not log why it marked the entry disconnected")
	}
	after, err := e.Istio.NetworkingV1().WorkloadEntries(kubeNS).Get(t.Context(), "pg-manual", metav1.GetOptions{})
	if err != nil || after.ResourceVersion != manual.ResourceVersion {
		t.Errorf("the manual WorkloadEntry: %v, resourceVersion %s -> %s", err, manual.ResourceVersion, after.GetResourceVersion())
	}
}
