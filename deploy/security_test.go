package deploy_test

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestRenderedSecurity checks what `kubectl kustomize deploy/` renders: the
// security and availability settings of the Deployment, the Service ports
// and the PodDisruptionBudget. It needs no API server.
func TestRenderedSecurity(t *testing.T) {
	objs := render(t, ".")
	for _, o := range objs {
		clusterScoped := slices.Contains([]string{"Namespace", "ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration"}, o.GetKind())
		if !clusterScoped && o.GetNamespace() != "istio-system" {
			t.Errorf("%s %s is in namespace %q, want istio-system", o.GetKind(), o.GetName(), o.GetNamespace())
		}
	}
	var d appsv1.Deployment
	find(t, objs, "Deployment", "controlplane", &d)
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("containers: %d, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	checks := []struct {
		name string
		ok   bool
	}{
		{"2 replicas", d.Spec.Replicas != nil && *d.Spec.Replicas == 2},
		{"service account controlplane", pod.ServiceAccountName == "controlplane"},
		{"pod runAsNonRoot", pod.SecurityContext != nil && isTrue(pod.SecurityContext.RunAsNonRoot)},
		{"pod seccomp RuntimeDefault", pod.SecurityContext != nil && pod.SecurityContext.SeccompProfile != nil &&
			pod.SecurityContext.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault},
		{"container runAsNonRoot", sc != nil && isTrue(sc.RunAsNonRoot)},
		{"read-only root filesystem", sc != nil && isTrue(sc.ReadOnlyRootFilesystem)},
		{"no privilege escalation", sc != nil && sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation},
		{"drops ALL capabilities, adds none", sc != nil && sc.Capabilities != nil &&
			slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) && len(sc.Capabilities.Add) == 0},
		{"not privileged", sc != nil && (sc.Privileged == nil || !*sc.Privileged)},
		{"cpu and memory requests", !c.Resources.Requests.Cpu().IsZero() && !c.Resources.Requests.Memory().IsZero()},
		{"memory limit", !c.Resources.Limits.Memory().IsZero()},
		{"readiness /readyz on 15014", probeOn(c.ReadinessProbe, "/readyz", 15014)},
		{"liveness /healthz on 15014", probeOn(c.LivenessProbe, "/healthz", 15014)},
		{"pod anti-affinity on app=controlplane", antiAffinity(pod.Affinity)},
		{"args serve", slices.Equal(c.Args, []string{"serve"})},
		{"POD_NAMESPACE and POD_NAME from the downward API",
			fieldRef(c.Env, "POD_NAMESPACE", "metadata.namespace") && fieldRef(c.Env, "POD_NAME", "metadata.name")},
		{"no host namespaces", !pod.HostNetwork && !pod.HostPID && !pod.HostIPC},
	}
	for _, ch := range checks {
		if !ch.ok {
			t.Errorf("Deployment controlplane: want %s", ch.name)
		}
	}
	checkService(t, objs)
	var pdb policyv1.PodDisruptionBudget
	find(t, objs, "PodDisruptionBudget", "controlplane", &pdb)
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1 {
		t.Errorf("PodDisruptionBudget minAvailable = %v, want 1", pdb.Spec.MinAvailable)
	}
}

// checkService checks the Services' ports (name: port -> pod port): ours,
// and istiod's names with istiod's port names for pilot-agent's defaults.
func checkService(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	for _, tt := range []struct {
		name string
		want map[string][2]int32
	}{
		{"controlplane", map[string][2]int32{"grpc-xds": {15010, 15010}, "tls-xds": {15012, 15012}, "http-monitoring": {15014, 15014},
			"https-webhook": {15017, 15017}}},
		{"istiod", map[string][2]int32{"grpc-xds": {15010, 15010}, "https-dns": {15012, 15012},
			"https-webhook": {443, 15017}, "http-monitoring": {15014, 15014}}},
	} {
		var svc corev1.Service
		find(t, objs, "Service", tt.name, &svc)
		got := map[string][2]int32{}
		for _, p := range svc.Spec.Ports {
			target := p.TargetPort.IntVal
			if p.TargetPort.StrVal != "" {
				target = containerPort(t, objs, p.TargetPort.StrVal)
			}
			got[p.Name] = [2]int32{p.Port, target}
		}
		if !maps.Equal(got, tt.want) {
			t.Errorf("Service %s ports %v, want %v (named by protocol)", tt.name, got, tt.want)
		}
		if svc.Spec.Selector["app"] != "controlplane" {
			t.Errorf("Service %s selects %v, want app=controlplane", tt.name, svc.Spec.Selector)
		}
	}
}

// containerPort is the number of the Deployment's container port name.
func containerPort(t *testing.T, objs []*unstructured.Unstructured, name string) int32 {
	t.Helper()
	var d appsv1.Deployment
	find(t, objs, "Deployment", "controlplane", &d)
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == name {
				return p.ContainerPort
			}
		}
	}
	t.Errorf("the Deployment has no container port named %s", name)
	return 0
}

func isTrue(b *bool) bool { return b != nil && *b }

func probeOn(p *corev1.Probe, path string, port int) bool {
	return p != nil && p.HTTPGet != nil && p.HTTPGet.Path == path && p.HTTPGet.Port.IntValue() == port
}

func antiAffinity(a *corev1.Affinity) bool {
	if a == nil || a.PodAntiAffinity == nil {
		return false
	}
	terms := a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution
	for _, w := range a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
		terms = append(terms, w.PodAffinityTerm)
	}
	for _, term := range terms {
		if term.TopologyKey != "" && term.LabelSelector != nil && term.LabelSelector.MatchLabels["app"] == "controlplane" {
			return true
		}
	}
	return false
}

func fieldRef(env []corev1.EnvVar, name, path string) bool {
	for _, e := range env {
		if e.Name == name {
			return e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == path
		}
	}
	return false
}

// TestDockerfile checks what `make image` builds, since no Docker engine
// runs the build here: a static binary (CGO off) in a distroless or scratch
// final stage, running as a numeric non-root user (which the kubelet can
// check against runAsNonRoot), the same user the Deployment names.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var stages [][]string // instructions per stage
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "FROM ") {
			stages = append(stages, nil)
		}
		if len(stages) > 0 {
			stages[len(stages)-1] = append(stages[len(stages)-1], line)
		}
	}
	if len(stages) < 2 {
		t.Fatalf("want a multi-stage build, got %d stages", len(stages))
	}
	build, final := strings.Join(stages[0], "\n"), stages[len(stages)-1]
	if !strings.Contains(build, "CGO_ENABLED=0") || !strings.Contains(build, "./cmd/controlplane") {
		t.Errorf("build stage does not build ./cmd/controlplane with CGO_ENABLED=0:\n%s", build)
	}
	if !strings.Contains(final[0], "gcr.io/distroless/static") && final[0] != "FROM scratch" {
		t.Errorf("final stage %q, want distroless static or scratch", final[0])
	}
	user := ""
	for _, in := range final {
		if u, ok := strings.CutPrefix(in, "USER "); ok {
			user = u
		}
	}
	var d appsv1.Deployment
	find(t, render(t, "."), "Deployment", "controlplane", &d)
	uid := d.Spec.Template.Spec.SecurityContext.RunAsUser
	if uid == nil || user != fmt.Sprintf("%d:%d", *uid, *uid) || *uid == 0 {
		t.Errorf("final stage USER %q, Deployment runAsUser %v: want the same numeric non-root user", user, uid)
	}
}
