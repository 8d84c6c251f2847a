package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/librarymesh/controlplane/inject"
	"github.com/librarymesh/controlplane/internal/e2e"
	"github.com/librarymesh/controlplane/internal/kubetest"
)

// These tests register the sidecar injector from deploy/ with a real
// kube-apiserver (its Service reference replaced by a loopback URL, since
// there is no cluster network) and create pods through it.

const plainNS = "plain" // no injection label

// injectorConfig is deploy/'s MutatingWebhookConfiguration with every
// webhook calling url and no caBundle (the server sets it).
func injectorConfig(t *testing.T, url string) *admissionregistrationv1.MutatingWebhookConfiguration {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e2e.ModuleRoot(), "deploy", "base", "mutatingwebhook.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	if err := yaml.UnmarshalStrict(b, &mwc); err != nil {
		t.Fatalf("deploy/base/mutatingwebhook.yaml: %v", err)
	}
	for i := range mwc.Webhooks {
		mwc.Webhooks[i].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: ptr.To(url)}
	}
	return &mwc
}

// injectServe starts a kube-apiserver with namespace kubeNS labelled
// istio-injection=enabled, plainNS unlabelled and istio-system, registers
// the injector at a loopback address, and starts `controlplane serve` with
// args. It returns once the server has set the webhooks' caBundle to its
// root, which it also returns.
func injectServe(t *testing.T, args ...string) (*kubetest.Env, *e2e.Server, []byte) {
	t.Helper()
	e := kubetest.New(t)
	for ns, labels := range map[string]map[string]string{"istio-system": nil, kubeNS: {"istio-injection": "enabled"}, plainNS: nil} {
		if _, err := e.Kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create namespace %s: %v", ns, err)
		}
	}
	addr := e2e.FreeLoopbackAddr(t)
	mwc := injectorConfig(t, "https://"+addr+inject.Path)
	if _, err := e.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(t.Context(), mwc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("register the injector: %v", err)
	}
	srv := e2e.Serve(t, append([]string{"--kubeconfig", e.KubeconfigPath, "--leader-elect=false",
		"--extra-san", "127.0.0.1", "--inject-addr", addr}, args...)...)
	var root []byte
	e2e.Eventually(t, "the server to set the injector's caBundle to its root", 20*time.Second, func() bool {
		sec, err := e.Kube.CoreV1().Secrets("istio-system").Get(t.Context(), "istio-ca-secret", metav1.GetOptions{})
		if err != nil {
			return false
		}
		root = sec.Data["root-cert.pem"]
		got, err := e.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(t.Context(), mwc.Name, metav1.GetOptions{})
		return err == nil && !slices.ContainsFunc(got.Webhooks, func(w admissionregistrationv1.MutatingWebhook) bool {
			return !bytes.Equal(w.ClientConfig.CABundle, root)
		})
	})
	return e, srv, root
}

// warnings collects the API server's warnings to a client.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, msg)
}

// createPod creates pod as a controller would and reads it back as stored,
// with the warnings the request got. It retries while the API server
// cannot call the webhook yet (it picks up a new caBundle within moments).
func createPod(t *testing.T, e *kubetest.Env, pod *corev1.Pod) (*corev1.Pod, []string, error) {
	t.Helper()
	w := &warnings{}
	cfg := rest.CopyConfig(e.Config)
	cfg.WarningHandler = w
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var got *corev1.Pod
	deadline := time.Now().Add(15 * time.Second)
	for {
		got, err = client.CoreV1().Pods(pod.Namespace).Create(t.Context(), pod, metav1.CreateOptions{})
		if err == nil || !strings.Contains(err.Error(), "failed calling webhook") || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return nil, w.msgs, err
	}
	stored, err := e.Kube.CoreV1().Pods(pod.Namespace).Get(t.Context(), got.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("read back pod %s: %v", got.Name, err)
	}
	return stored, w.msgs, nil
}

// deploymentPod is a pod as Deployment name's ReplicaSet would create it
// in ns, running as service account sa.
func deploymentPod(ns, name, sa string, labels map[string]string) *corev1.Pod {
	l := map[string]string{"app": name, "pod-template-hash": "5f7c9d8b4"}
	for k, v := range labels {
		l[k] = v
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: name + "-5f7c9d8b4-", Namespace: ns, Labels: l,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: name + "-5f7c9d8b4",
				UID: "5b0c1d4e-0000-4000-8000-000000000001", Controller: ptr.To(true)}}},
		Spec: corev1.PodSpec{ServiceAccountName: sa, Containers: []corev1.Container{{Name: "app", Image: "example.com/" + name + ":1",
			Ports: []corev1.ContainerPort{{Name: "grpc", ContainerPort: 7070}}}}},
	}
}

// medianCreate creates n pods in ns one after another and returns the
// median time of createPod.
func medianCreate(t *testing.T, e *kubetest.Env, n int, ns string) time.Duration {
	t.Helper()
	times := make([]time.Duration, n)
	for i := range times {
		begin := time.Now()
		if _, _, err := createPod(t, e, deploymentPod(ns, "timed", "timed", nil)); err != nil {
			t.Fatal(err)
		}
		times[i] = time.Since(begin)
	}
	slices.Sort(times)
	return times[n/2].Round(100 * time.Microsecond)
}

func containerNames(cs []corev1.Container) []string {
	var n []string
	for _, c := range cs {
		n = append(n, c.Name)
	}
	return n
}

func containerNamed(cs []corev1.Container, name string) *corev1.Container {
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	return nil
}

func volumeNamed(vs []corev1.Volume, name string) *corev1.Volume {
	for i := range vs {
		if vs[i].Name == name {
			return &vs[i]
		}
	}
	return nil
}

// checkInjected checks the stored pod has Istio's sidecar.
func checkInjected(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	proxy := containerNamed(pod.Spec.Containers, inject.ProxyContainerName)
	if proxy == nil {
		t.Fatalf("pod %s has no istio-proxy container: %v", pod.Name, pod.Spec.Containers)
	}
	token, root := volumeNamed(pod.Spec.Volumes, "istio-token"), volumeNamed(pod.Spec.Volumes, "istiod-ca-cert")
	checks := []struct {
		what string
		ok   bool
	}{
		{"istio-proxy runs Istio's proxyv2 image", proxy.Image == inject.Config{}.ProxyImage()},
		{"istio-proxy runs pilot-agent proxy sidecar", slices.Equal(proxy.Args[:2], []string{"proxy", "sidecar"})},
		{"istio-token: a projected service account token for audience istio-ca", token != nil && token.Projected != nil &&
			len(token.Projected.Sources) == 1 && token.Projected.Sources[0].ServiceAccountToken != nil &&
			token.Projected.Sources[0].ServiceAccountToken.Audience == "istio-ca"},
		{"istiod-ca-cert: ConfigMap istio-ca-root-cert", root != nil && root.ConfigMap != nil && root.ConfigMap.Name == "istio-ca-root-cert"},
		{"istio-init capture init container", containerNamed(pod.Spec.InitContainers, inject.InitContainerName) != nil},
		{"readiness on 15021", proxy.ReadinessProbe != nil && proxy.ReadinessProbe.HTTPGet != nil && proxy.ReadinessProbe.HTTPGet.Port.IntValue() == 15021},
		{"prometheus annotations for 15020", pod.Annotations["prometheus.io/port"] == "15020" && pod.Annotations["prometheus.io/scrape"] == "true"},
		{"status annotation", pod.Annotations[inject.StatusAnnotation] != ""},
		{"tlsMode label", pod.Labels["security.istio.io/tlsMode"] == "istio"},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("pod %s: want %s", pod.Name, c.what)
		}
	}
}

// checkUnchanged checks the stored pod has exactly the containers and
// volumes it was created with, and no injection annotation.
func checkUnchanged(t *testing.T, sent, got *corev1.Pod) {
	t.Helper()
	if !slices.Equal(containerNames(got.Spec.Containers), containerNames(sent.Spec.Containers)) || len(got.Spec.InitContainers) != len(sent.Spec.InitContainers) ||
		volumeNamed(got.Spec.Volumes, "istio-token") != nil || got.Annotations[inject.StatusAnnotation] != "" {
		t.Errorf("pod %s/%s was changed: containers %v, init %v, annotations %v", got.Namespace, got.Name,
			containerNames(got.Spec.Containers), containerNames(got.Spec.InitContainers), got.Annotations)
	}
}

// TestKubeSidecarInjection: deploy/'s webhook configuration, registered with
// a real kube-apiserver, sends pod creations to `serve`, which set its
// caBundle at start. A Deployment's pod in a namespace labelled
// istio-injection=enabled, and a pod labelled sidecar.istio.io/inject=true
// elsewhere, are stored with the sidecar (a native sidecar when the pod
// asks, which the API server validates); opted-out pods (label or
// annotation) and a pod in an unlabelled namespace are stored unchanged; a
// pod the sidecar cannot be added to is refused naming the field; an odd
// inject value is a warning.
func TestKubeSidecarInjection(t *testing.T) {
	e, srv, _ := injectServe(t)
	pod, warns, err := createPod(t, e, deploymentPod(kubeNS, "reviews", "reviews", nil))
	if err != nil {
		t.Fatalf("create a Deployment's pod in %s: %v\n%s", kubeNS, err, srv.Logs())
	}
	checkInjected(t, pod)
	if len(warns) != 0 {
		t.Errorf("warnings for a plain pod: %q", warns)
	}
	labelled, _, err := createPod(t, e, deploymentPod(plainNS, "ratings", "ratings", map[string]string{inject.InjectKey: "true"}))
	if err != nil {
		t.Fatal(err)
	}
	checkInjected(t, labelled)

	native := deploymentPod(kubeNS, "migrate", "migrate", nil)
	native.Annotations = map[string]string{"sidecar.istio.io/nativeSidecar": "true"}
	native.Spec.InitContainers = []corev1.Container{{Name: "schema", Image: "example.com/migrate:1"}}
	if native, _, err = createPod(t, e, native); err != nil {
		t.Fatalf("create a pod asking for a native sidecar: %v", err)
	}
	if names := containerNames(native.Spec.InitContainers); !slices.Equal(names, []string{"istio-init", "istio-proxy", "schema"}) {
		t.Errorf("native sidecar pod's init containers %v, want istio-init, istio-proxy, schema", names)
	} else if rp := native.Spec.InitContainers[1].RestartPolicy; rp == nil || *rp != corev1.ContainerRestartPolicyAlways {
		t.Errorf("native istio-proxy restartPolicy %v, want Always", rp)
	}

	// A pod as Istio's gateway chart makes it (in a plain namespace, asking
	// by label): its istio-proxy placeholder becomes the router proxy.
	gw := deploymentPod(plainNS, "ingressgateway", "ingressgateway", map[string]string{inject.InjectKey: "true"})
	gw.Annotations = map[string]string{inject.TemplatesAnnotation: inject.GatewayTemplate}
	gw.Spec.Containers = []corev1.Container{{Name: "istio-proxy", Image: "auto"}}
	if gw, _, err = createPod(t, e, gw); err != nil {
		t.Fatalf("create a gateway chart's pod: %v", err)
	}
	if c := gw.Spec.Containers; len(c) != 1 || c[0].Image == "auto" || !slices.Equal(c[0].Args[:2], []string{"proxy", "router"}) ||
		len(gw.Spec.InitContainers) != 0 {
		t.Errorf("gateway pod: containers %+v, init containers %v; want istio-proxy running Istio's image as `proxy router`, no capture",
			c, containerNames(gw.Spec.InitContainers))
	}

	annotatedOut := deploymentPod(kubeNS, "batch", "batch", nil)
	annotatedOut.Annotations = map[string]string{inject.InjectKey: "false"}
	for _, p := range []*corev1.Pod{
		deploymentPod(kubeNS, "legacy", "legacy", map[string]string{inject.InjectKey: "false"}),
		annotatedOut,
		deploymentPod(plainNS, "details", "details", nil),
	} {
		got, _, err := createPod(t, e, p)
		if err != nil {
			t.Fatalf("create pod %s in %s: %v", p.GenerateName, p.Namespace, err)
		}
		checkUnchanged(t, p, got)
	}
	t.Logf("median of 15 pod creates (and reads): %s through the injector, %s in an unlabelled namespace (no webhook call)",
		medianCreate(t, e, 15, kubeNS), medianCreate(t, e, 15, plainNS))

	bad := deploymentPod(kubeNS, "squatter", "squatter", nil)
	bad.Spec.Containers = append(bad.Spec.Containers, corev1.Container{Name: "istio-proxy", Image: "nginx:1.27"})
	_, _, err = createPod(t, e, bad)
	if err == nil || !strings.Contains(err.Error(), "denied the request") || !strings.Contains(err.Error(), `spec.containers[1].image`) {
		t.Errorf("a pod with its own istio-proxy container: %v; want a refusal naming spec.containers[1].image", err)
	}
	t.Logf("refused: %v", err)

	odd, warns, err := createPod(t, e, deploymentPod(kubeNS, "odd", "odd", map[string]string{inject.InjectKey: "yes"}))
	if err != nil {
		t.Fatal(err)
	}
	checkInjected(t, odd)
	if !slices.ContainsFunc(warns, func(w string) bool { return strings.Contains(w, `metadata.labels[sidecar.istio.io/inject]: "yes"`) }) {
		t.Errorf("warnings %q, want one naming the inject label's value", warns)
	}
}
