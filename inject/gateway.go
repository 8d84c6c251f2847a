package inject

import (
	"errors"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
)

// Istio's gateway template: a pod made by Istio's gateway chart asks for it
// with this annotation and already has an istio-proxy container whose image
// is "auto"; that container becomes the gateway's proxy (pilot-agent
// `proxy router`), with no traffic capture.
const (
	TemplatesAnnotation = "inject.istio.io/templates"
	GatewayTemplate     = "gateway"
	autoImage           = "auto"
)

// gatewayProxy is the index of the istio-proxy container to fill in, or -1
// when pod does not ask for the gateway template.
func gatewayProxy(pod *corev1.Pod) int {
	if pod.Annotations[TemplatesAnnotation] != GatewayTemplate {
		return -1
	}
	return slices.IndexFunc(pod.Spec.Containers, func(c corev1.Container) bool {
		return c.Name == ProxyContainerName && c.Image == autoImage
	})
}

// mutateGateway fills in the istio-proxy container at index i as Istio's
// gateway template does: the proxy image running `proxy router`, with the
// sidecar's environment, certificates and probes, and the pod's own ports
// and resources for it kept.
func mutateGateway(cfg Config, pod *corev1.Pod, namespace string, i int, res Result) (Result, error) {
	others := pod.DeepCopy()
	others.Spec.Containers = slices.Delete(others.Spec.Containers, i, i+1)
	if others.Annotations[annoPromPort] == strconv.Itoa(statusPort) {
		// The chart's own scrape settings already name the agent's port.
		delete(others.Annotations, annoPromScrape)
		delete(others.Annotations, annoPromPort)
		delete(others.Annotations, annoPromPath)
	}
	o, err := parseOptions(cfg, pod)
	if err = errors.Join(err, conflicts(others)); err != nil {
		return res, &Refusal{Pod: namespace + "/" + podName(pod), Err: err}
	}
	o.mode, o.native = modeNone, false
	add, err := injectPod(cfg, o, others, namespace)
	if err != nil {
		return res, &Refusal{Pod: namespace + "/" + podName(pod), Err: err}
	}
	proxy, own := add.containers[0], pod.Spec.Containers[i]
	proxy.Args[1] = "router"
	if len(own.Ports) > 0 {
		proxy.Ports = own.Ports
	}
	if len(own.Resources.Requests) > 0 || len(own.Resources.Limits) > 0 {
		proxy.Resources = own.Resources
	}
	add.containers = nil
	add.replace = map[string]any{"/spec/containers/" + strconv.Itoa(i): proxy}
	res.Patch, err = patchFor(pod, add)
	return res, err
}
