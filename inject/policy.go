package inject

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// Names Istio gives the injected parts, the labels and annotations it reads.
const (
	ProxyContainerName = "istio-proxy"
	InitContainerName  = "istio-init"

	// InjectKey, as a pod label or annotation, opts a pod in ("true") or
	// out ("false"); the label wins over the annotation.
	InjectKey = "sidecar.istio.io/inject"
	// StatusAnnotation marks an injected pod and lists what was added.
	StatusAnnotation = "sidecar.istio.io/status"
	// RevisionKey selects a control plane revision (namespace or pod label).
	RevisionKey = "istio.io/rev"
)

// ignoredNamespaces are never injected, whatever their labels (Istio's list).
var ignoredNamespaces = []string{"kube-system", "kube-public"}

// skipReason returns why pod is left unchanged, or "" when it is to be
// injected. warnings collects what was odd but not fatal.
func skipReason(pod *corev1.Pod, namespace string, warnings *[]string) string {
	if pod.Spec.HostNetwork {
		return "spec.hostNetwork is true: capture would change the node's network"
	}
	if slices.Contains(ignoredNamespaces, namespace) {
		return "namespace " + namespace + " is never injected"
	}
	switch optIn(pod, warnings) {
	case "false":
		return InjectKey + " is false"
	}
	if _, ok := pod.Annotations[StatusAnnotation]; ok {
		return "already injected (annotation " + StatusAnnotation + ")"
	}
	return ""
}

// optIn returns the pod's own choice: "true", "false" or "" (none, or a
// value other than true/false, which is warned about and ignored as Istio
// does).
func optIn(pod *corev1.Pod, warnings *[]string) string {
	field, v := "metadata.annotations", ""
	if a, ok := pod.Annotations[InjectKey]; ok {
		v = a
	}
	if l, ok := pod.Labels[InjectKey]; ok {
		field, v = "metadata.labels", l
	}
	switch v {
	case "true", "false", "":
		return v
	}
	*warnings = append(*warnings, fmt.Sprintf("%s[%s]: %q is neither \"true\" nor \"false\"; the sidecar is injected as the namespace asks", field, InjectKey, v))
	return ""
}
