package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/librarymesh/controlplane/inject"
	"github.com/librarymesh/controlplane/internal/e2e"
	"github.com/librarymesh/controlplane/internal/kubetest"
)

// kubelet stands in for the node's kubelet, which this machine does not
// have: it gives a stored pod's container what a kubelet would, the
// environment (downward API values resolved, $(VAR) references expanded)
// and its volume mounts, as folders under root at each mount path. The
// service account token comes from the API server's TokenRequest API, bound
// to the pod, as a kubelet gets it.
type kubelet struct {
	t    *testing.T
	e    *kubetest.Env
	pod  *corev1.Pod
	root string
}

// env resolves c's environment; a source this stand-in cannot resolve
// fails the test.
func (k kubelet) env(c *corev1.Container) []string {
	k.t.Helper()
	var out []string
	for _, v := range c.Env {
		val := v.Value
		switch src := v.ValueFrom; {
		case src == nil:
		case src.FieldRef != nil:
			val = k.field(src.FieldRef.FieldPath)
		case src.ResourceFieldRef != nil:
			val = k.resource(c, src.ResourceFieldRef)
		default:
			k.t.Fatalf("env %s: no stand-in for %+v", v.Name, src)
		}
		out = append(out, v.Name+"="+val)
	}
	return out
}

func (k kubelet) field(path string) string {
	p := k.pod
	values := map[string]string{"metadata.name": p.Name, "metadata.namespace": p.Namespace, "status.podIP": p.Status.PodIP,
		"status.hostIP": p.Status.HostIP, "spec.serviceAccountName": p.Spec.ServiceAccountName, "spec.nodeName": p.Spec.NodeName}
	v, ok := values[path]
	if !ok {
		k.t.Fatalf("fieldRef %s: no stand-in", path)
	}
	return v
}

// resource is a limit divided by the divisor, rounded up, as the kubelet
// gives it.
func (k kubelet) resource(c *corev1.Container, ref *corev1.ResourceFieldSelector) string {
	name, ok := strings.CutPrefix(ref.Resource, "limits.")
	q, set := c.Resources.Limits[corev1.ResourceName(name)]
	if !ok || !set {
		k.t.Fatalf("resourceFieldRef %s: no stand-in (only set limits)", ref.Resource)
	}
	div := ref.Divisor.MilliValue()
	if div == 0 {
		div = 1000
	}
	return fmt.Sprint((q.MilliValue() + div - 1) / div)
}

var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expand replaces $(VAR) in args with env's values.
func expand(args, env []string) []string {
	vals := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vals[k] = v
	}
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = envRef.ReplaceAllStringFunc(a, func(m string) string {
			if v, ok := vals[m[2:len(m)-1]]; ok {
				return v
			}
			return m
		})
	}
	return out
}

// mount fills root+mountPath for each of c's volume mounts.
func (k kubelet) mount(c *corev1.Container) {
	k.t.Helper()
	for _, m := range c.VolumeMounts {
		v := volumeNamed(k.pod.Spec.Volumes, m.Name)
		if v == nil {
			k.t.Fatalf("mount %s: no such volume", m.Name)
		}
		dir := filepath.Join(k.root, m.MountPath)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			k.t.Fatal(err)
		}
		for name, data := range k.volumeFiles(v) {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
				k.t.Fatal(err)
			}
		}
	}
}

// volumeFiles is what a volume holds: nothing for an emptyDir, the keys of
// a ConfigMap, the token of a projected service account token, the pod's
// labels and annotations for the downward API.
func (k kubelet) volumeFiles(v *corev1.Volume) map[string][]byte {
	k.t.Helper()
	switch {
	case v.EmptyDir != nil:
		return nil
	case v.ConfigMap != nil:
		cm, err := k.e.Kube.CoreV1().ConfigMaps(k.pod.Namespace).Get(k.t.Context(), v.ConfigMap.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) && v.ConfigMap.Optional != nil && *v.ConfigMap.Optional {
			return nil
		}
		if err != nil {
			k.t.Fatalf("volume %s: %v", v.Name, err)
		}
		files := map[string][]byte{}
		for key, val := range cm.Data {
			files[key] = []byte(val)
		}
		return files
	case v.Projected != nil && len(v.Projected.Sources) == 1 && v.Projected.Sources[0].ServiceAccountToken != nil:
		sat := v.Projected.Sources[0].ServiceAccountToken
		return map[string][]byte{sat.Path: []byte(k.token(sat))}
	case v.DownwardAPI != nil:
		files := map[string][]byte{}
		for _, item := range v.DownwardAPI.Items {
			files[item.Path] = k.downward(item.FieldRef.FieldPath)
		}
		return files
	}
	k.t.Fatalf("volume %s: no stand-in for %+v", v.Name, v.VolumeSource)
	return nil
}

// token asks the API server for the pod's service account token with the
// projection's audience and expiry, bound to the pod.
func (k kubelet) token(sat *corev1.ServiceAccountTokenProjection) string {
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		Audiences: []string{sat.Audience}, ExpirationSeconds: sat.ExpirationSeconds,
		BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: k.pod.Name, UID: k.pod.UID}}}
	tok, err := k.e.Kube.CoreV1().ServiceAccounts(k.pod.Namespace).CreateToken(k.t.Context(), k.pod.Spec.ServiceAccountName, req, metav1.CreateOptions{})
	if err != nil {
		k.t.Fatalf("TokenRequest for %s/%s (audience %s): %v", k.pod.Namespace, k.pod.Spec.ServiceAccountName, sat.Audience, err)
	}
	return tok.Status.Token
}

// downward writes labels or annotations as the kubelet does: key="value"
// lines, sorted.
func (k kubelet) downward(path string) []byte {
	m := map[string]map[string]string{"metadata.labels": k.pod.Labels, "metadata.annotations": k.pod.Annotations}[path]
	var b strings.Builder
	for _, key := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&b, "%s=%q\n", key, m[key])
	}
	return []byte(b.String())
}

// runPodAgent makes pod as a kubelet would (node, IP, running) and runs its
// injected istio-proxy container's pilot-agent in a folder of its own, with
// exactly the container's environment and volumes, plus what Istio's
// proxyless template (grpc-agent) adds for an agent without Envoy.
func runPodAgent(t *testing.T, e *kubetest.Env, pod *corev1.Pod, ip string) istioAgent {
	t.Helper()
	pod = startPod(t, e, pod, ip)
	c := containerNamed(pod.Spec.Containers, inject.ProxyContainerName)
	root, err := os.MkdirTemp("", "pod-") // short: the XDS socket path must fit sun_path
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	k := kubelet{t: t, e: e, pod: pod, root: root}
	k.mount(c)
	env := k.env(c)
	// Istio's grpc-agent template: no Envoy, certificates as files for the
	// gRPC library, and its bootstrap, at the template's paths in the pod.
	env = append(env, "DISABLE_ENVOY=true", "ISTIO_META_GENERATOR=grpc",
		"OUTPUT_CERTS="+filepath.Join(root, "var/lib/istio/data"),
		"GRPC_XDS_BOOTSTRAP="+filepath.Join(root, "etc/istio/proxy/grpc-bootstrap.json"))
	// pilot-agent is the proxyv2 image's entrypoint; the pod's root is its
	// working folder, where its relative defaults (./var/run/secrets/...,
	// ./etc/istio/proxy) meet the mounts.
	cmd := exec.Command(e2e.Tool(t, "pilot-agent"), expand(c.Args, env)...)
	cmd.Dir = root
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + root}, env...)
	t.Logf("pilot-agent %s\nenv:\n%s", strings.Join(cmd.Args[1:], " "), strings.Join(env, "\n"))
	a := istioAgent{dir: root, certs: "var/lib/istio/data"}
	a.waitFiles(t, runLogged(t, cmd, filepath.Join(root, "pilot-agent.log")), pod.Spec.ServiceAccountName)
	return a
}

// startPod binds pod to a node and gives it ip and a running, ready
// status, as the scheduler and kubelet would; it returns the stored pod.
func startPod(t *testing.T, e *kubetest.Env, pod *corev1.Pod, ip string) *corev1.Pod {
	t.Helper()
	ctx, pods := t.Context(), e.Kube.CoreV1().Pods(pod.Namespace)
	bind := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: pod.Name}, Target: corev1.ObjectReference{Kind: "Node", Name: "node-1"}}
	if err := pods.Bind(ctx, bind, metav1.CreateOptions{}); err != nil {
		t.Fatalf("bind pod %s: %v", pod.Name, err)
	}
	got, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got.Status.Phase, got.Status.HostIP, got.Status.PodIP = corev1.PodRunning, "127.0.0.1", ip
	got.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	got.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	if got, err = pods.UpdateStatus(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("set status of pod %s: %v", pod.Name, err)
	}
	return got
}

// podBootstrap is the gRPC bootstrap the agent wrote, as the application
// container would read it: it names the agent's XDS socket at
// /etc/istio/proxy/XDS in the pod (the istio-envoy volume), which is under
// the agent's folder here.
func podBootstrap(t *testing.T, a istioAgent) []byte {
	t.Helper()
	const inPod = "unix:///etc/istio/proxy/XDS"
	b := a.bootstrap(t)
	if !strings.Contains(string(b), inPod) {
		t.Fatalf("bootstrap does not name the socket %s:\n%s", inPod, b)
	}
	return []byte(strings.ReplaceAll(string(b), inPod, "unix://"+a.path("etc/istio/proxy/XDS")))
}

// TestInjectedPilotAgent: Istio's pilot-agent, run with exactly the
// environment and files our injector gave a pod (the token from the
// kube-apiserver's TokenRequest API for audience istio-ca, the root from
// the ConfigMap the server published), gets its certificate from our CA
// (TokenReview) and proxies our xDS: a grpc-go client using the agent's
// bootstrap reaches the echo ServiceEntry's backend.
func TestInjectedPilotAgent(t *testing.T) {
	e2e.Tool(t, "pilot-agent")
	if !inNetworkNamespace(t) {
		return
	}
	defaultRoute(t)
	secure := e2e.FreeLoopbackAddr(t)
	e, srv, root := injectServe(t, "--secure-grpc-addr", secure, "--inject-discovery-address", secure)
	backend := e2e.HealthBackend(t, backendServing)
	createEcho(t, e, backend)
	if _, err := e.Kube.CoreV1().ServiceAccounts(kubeNS).Create(t.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "client"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitRootPublished(t, e, kubeNS, root)
	pod, _, err := createPod(t, e, deploymentPod(kubeNS, "client", "client", nil))
	if err != nil {
		t.Fatalf("create pod: %v\n%s", err, srv.Logs())
	}
	checkInjected(t, pod)
	agent := runPodAgent(t, e, pod, "127.0.0.3")
	checkAgentCerts(t, agent, root, spiffeID(kubeNS, "client"))

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	p, err := e2e.XDSHealthCheck(ctx, t, "xds:///"+echoTarget, podBootstrap(t, agent), true)
	if err != nil {
		t.Fatalf("RPC through the injected pilot-agent's xDS: %v\n%s", err, srv.Logs())
	}
	if got := p.Addr.String(); got != fmt.Sprintf("127.0.0.1:%d", backend) {
		t.Errorf("reached %s, want the echo entry's endpoint 127.0.0.1:%d", got, backend)
	}
}

// defaultRoute gives the network namespace a default route (through lo,
// with a documentation address), without which kube-apiserver finds no
// address to advertise and does not start.
func defaultRoute(t *testing.T) {
	t.Helper()
	for _, args := range [][]string{{"addr", "add", "192.0.2.1/32", "dev", "lo"}, {"route", "add", "default", "dev", "lo"}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// waitRootPublished waits until ConfigMap istio-ca-root-cert in ns holds root.
func waitRootPublished(t *testing.T, e *kubetest.Env, ns string, root []byte) {
	t.Helper()
	e2e.Eventually(t, "the root ConfigMap in "+ns, 20*time.Second, func() bool {
		cm, err := e.Kube.CoreV1().ConfigMaps(ns).Get(t.Context(), "istio-ca-root-cert", metav1.GetOptions{})
		return err == nil && cm.Data["root-cert.pem"] == string(root)
	})
}
