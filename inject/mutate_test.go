package inject

import (
	"encoding/json"
	"errors"
	jsonpatch "github.com/evanphx/json-patch/v5"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// basePod is a plain pod in namespace app with one container.
func basePod(edit func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "app", Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{ServiceAccountName: "web", Containers: []corev1.Container{{Name: "web", Image: "example.com/web:1"}}},
	}
	if edit != nil {
		edit(p)
	}
	return p
}

func TestMutateLeavesAlone(t *testing.T) {
	tests := []struct {
		name, namespace string
		edit            func(*corev1.Pod)
		reason          string
	}{
		{"host network", "app", func(p *corev1.Pod) { p.Spec.HostNetwork = true }, "hostNetwork"},
		{"label false", "app", func(p *corev1.Pod) { p.Labels[InjectKey] = "false" }, "is false"},
		{"annotation false", "app", func(p *corev1.Pod) { p.Annotations = map[string]string{InjectKey: "false"} }, "is false"},
		{"label false beats annotation true", "app", func(p *corev1.Pod) {
			p.Labels[InjectKey] = "false"
			p.Annotations = map[string]string{InjectKey: "true"}
		}, "is false"},
		{"status annotation", "app", func(p *corev1.Pod) { p.Annotations = map[string]string{StatusAnnotation: "{}"} }, "already injected"},
		{"istio-proxy of another hub and tag", "app", func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: ProxyContainerName, Image: "gcr.io/istio-release/proxyv2:1.20.0@sha256:abc"})
		}, "already injected"},
		{"native sidecar istio-proxy", "app", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: ProxyContainerName, Image: "docker.io/istio/proxyv2:1.28.0"}}
		}, "spec.initContainers[0] is istio-proxy"},
		{"kube-system", "kube-system", nil, "never injected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Mutate(testConfig(), basePod(tt.edit), tt.namespace)
			if err != nil {
				t.Fatalf("Mutate: %v", err)
			}
			if res.Patch != nil || !strings.Contains(res.Skipped, tt.reason) {
				t.Errorf("got skipped %q, patch %s; want unchanged because %q", res.Skipped, res.Patch, tt.reason)
			}
		})
	}
}

func TestMutateRefuses(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*corev1.Pod)
		wants []string // each must be in the message
	}{
		{"istio-proxy with another image", func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: ProxyContainerName, Image: "nginx:1.27"})
		}, []string{"spec.containers[1].image", `"nginx:1.27"`}},
		{"volume named istio-token", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "data"}, {Name: "istio-token"}}
		}, []string{"spec.volumes[1].name", "istio-token"}},
		{"init container named istio-init", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: InitContainerName, Image: "busybox"}}
		}, []string{"spec.initContainers[0].name"}},
		{"application on 15021", func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 8080}, {ContainerPort: 15021}}
		}, []string{"spec.containers[0].ports[1].containerPort", "15021"}},
		{"two problems at once", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "istio-envoy"}}
			p.Annotations = map[string]string{annoInterceptionMode: "IPVS"}
		}, []string{"spec.volumes[0].name", annoInterceptionMode, `"IPVS"`}},
		{"bad CIDR", func(p *corev1.Pod) { p.Annotations = map[string]string{annoExcludeIPs: "10.0.0.0/8,10.1.2"} },
			[]string{annoExcludeIPs, `"10.1.2"`}},
		{"bad port list", func(p *corev1.Pod) { p.Annotations = map[string]string{annoExcludeOutbound: "5432,x"} },
			[]string{annoExcludeOutbound, `"x"`}},
		{"star not allowed in excludes", func(p *corev1.Pod) { p.Annotations = map[string]string{annoExcludeInbound: "*"} },
			[]string{annoExcludeInbound}},
		{"bad quantity", func(p *corev1.Pod) { p.Annotations = map[string]string{annoProxyMemory: "lots"} },
			[]string{annoProxyMemory, `"lots"`}},
		{"prometheus port is the agent's", func(p *corev1.Pod) { p.Annotations = map[string]string{annoPromPort: "15020"} },
			[]string{annoPromPort, "15020"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Mutate(testConfig(), basePod(tt.edit), "app")
			var refusal *Refusal
			if !errors.As(err, &refusal) {
				t.Fatalf("Mutate: %+v, %v; want a *Refusal", res, err)
			}
			if res.Patch != nil {
				t.Errorf("refused pod has a patch")
			}
			msg := err.Error()
			for _, w := range append(tt.wants, "app/web-0", InjectKey+`: "false"`) {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q does not name %q", msg, w)
				}
			}
		})
	}
}

func TestMutateWarns(t *testing.T) {
	pod := basePod(func(p *corev1.Pod) {
		p.Labels[InjectKey] = "yes"
		p.Spec.DNSPolicy = corev1.DNSDefault
	})
	res, err := Mutate(testConfig(), pod, "app")
	if err != nil || res.Patch == nil {
		t.Fatalf("Mutate: %+v, %v; want injected", res, err)
	}
	want := []string{`metadata.labels[sidecar.istio.io/inject]: "yes"`, "spec.dnsPolicy is Default"}
	if len(res.Warnings) != len(want) {
		t.Fatalf("warnings %q, want %d", res.Warnings, len(want))
	}
	for i, w := range want {
		if !strings.Contains(res.Warnings[i], w) {
			t.Errorf("warning %q does not contain %q", res.Warnings[i], w)
		}
	}
}

// The input pod is never modified, and an injected pod is left alone when
// it comes back (a re-created pod with the status annotation).
func TestMutateIdempotent(t *testing.T) {
	pod := basePod(nil)
	before := pod.DeepCopy()
	res, err := Mutate(testConfig(), pod, "app")
	if err != nil || res.Patch == nil {
		t.Fatalf("Mutate: %+v, %v", res, err)
	}
	if pod.String() != before.String() {
		t.Errorf("Mutate changed its input")
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Mutate(testConfig(), applyPatch(t, raw, res.Patch), "app")
	if err != nil || again.Patch != nil || !strings.Contains(again.Skipped, "already injected") {
		t.Errorf("injected pod again: %+v, %v; want left alone as already injected", again, err)
	}
}

// The patch only inserts: the pod's own list elements keep their fields,
// also ones this build of the API types does not know (sent by a newer API
// server), when the sidecar is inserted before them (native sidecar).
func TestPatchKeepsUnknownFields(t *testing.T) {
	raw := []byte(`{"metadata":{"name":"job-0","namespace":"app","annotations":{"sidecar.istio.io/nativeSidecar":"true"}},
		"spec":{"initContainers":[{"name":"schema","image":"example.com/migrate:1","futureField":{"x":1}}],
		"containers":[{"name":"app","image":"example.com/app:1","futureField":2}]}}`)
	var pod corev1.Pod
	if err := json.Unmarshal(raw, &pod); err != nil {
		t.Fatal(err)
	}
	res, err := Mutate(testConfig(), &pod, "app")
	if err != nil || res.Patch == nil {
		t.Fatalf("Mutate: %+v, %v", res, err)
	}
	var out struct {
		Spec struct {
			InitContainers, Containers []map[string]any
		}
	}
	p, err := jsonpatch.DecodePatch(res.Patch)
	if err != nil {
		t.Fatal(err)
	}
	patched, err := p.Apply(raw)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if err := json.Unmarshal(patched, &out); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range out.Spec.InitContainers {
		names = append(names, c["name"].(string))
		if _, ok := c["futureField"]; ok != (c["name"] == "schema") {
			t.Errorf("init container %s: futureField present %v", c["name"], ok)
		}
	}
	if strings.Join(names, ",") != "istio-init,istio-proxy,schema" {
		t.Errorf("init containers %v, want istio-init, istio-proxy, then the pod's own", names)
	}
	if len(out.Spec.Containers) != 1 || out.Spec.Containers[0]["futureField"] == nil {
		t.Errorf("containers %v, want the pod's own with its futureField", out.Spec.Containers)
	}
}
