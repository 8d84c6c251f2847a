package inject

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
)

// Prometheus annotations (Istio merges the application's into the
// agent's, which serves both on 15020).
const (
	annoPromScrape = "prometheus.io/scrape"
	annoPromPort   = "prometheus.io/port"
	annoPromPath   = "prometheus.io/path"
)

// existingProxy looks for a container already named istio-proxy: with
// Istio's proxy image the pod is already injected (skip); with any other
// image the name is taken and the pod is refused.
func existingProxy(cfg Config, pod *corev1.Pod) (skip string, err error) {
	lists := []struct {
		field string
		list  []corev1.Container
	}{{"spec.containers", pod.Spec.Containers}, {"spec.initContainers", pod.Spec.InitContainers}}
	for _, l := range lists {
		for i, c := range l.list {
			field := l.field
			if c.Name != ProxyContainerName {
				continue
			}
			if cfg.isProxyImage(c.Image) {
				return fmt.Sprintf("already injected (%s[%d] is %s with image %s)", field, i, ProxyContainerName, c.Image), nil
			}
			return "", fmt.Errorf("%s[%d].image: the container named %s runs %q, not Istio's %s image; the name %s is the sidecar's",
				field, i, ProxyContainerName, c.Image, cfg.Image, ProxyContainerName)
		}
	}
	return "", nil
}

// conflicts reports what in the pod is in the sidecar's way: containers
// and volumes with the template's names, application ports the sidecar
// listens on.
func conflicts(pod *corev1.Pod) error {
	var errs []error
	for i, c := range pod.Spec.InitContainers {
		if c.Name == InitContainerName {
			errs = append(errs, fmt.Errorf("spec.initContainers[%d].name: %s is the name of the capture init container the sidecar adds", i, c.Name))
		}
	}
	for i, c := range pod.Spec.Containers {
		if c.Name == InitContainerName {
			errs = append(errs, fmt.Errorf("spec.containers[%d].name: %s is the name of the capture init container the sidecar adds", i, c.Name))
		}
		for j, p := range c.Ports {
			if what, ok := reservedPorts[p.ContainerPort]; ok {
				errs = append(errs, fmt.Errorf("spec.containers[%d].ports[%d].containerPort: %d is the sidecar's %s port", i, j, p.ContainerPort, what))
			}
		}
	}
	ours := map[string]bool{}
	for _, v := range sidecarVolumes() {
		ours[v.volume.Name] = true
	}
	for i, v := range pod.Spec.Volumes {
		if ours[v.Name] {
			errs = append(errs, fmt.Errorf("spec.volumes[%d].name: %s is a volume the sidecar adds", i, v.Name))
		}
	}
	return errors.Join(errs...)
}

// appScrape is ISTIO_PROMETHEUS_ANNOTATIONS: where the application's own
// metrics are, for pilot-agent to merge into its own on 15020.
type appScrape struct {
	Scrape string `json:"scrape"`
	Path   string `json:"path"`
	Port   string `json:"port"`
}

// mergePrometheus points the prometheus.io annotations at pilot-agent's
// merged metrics (15020, /stats/prometheus), as Istio does unless the pod
// says prometheus.io/scrape: "false". It returns the application's own
// scrape settings as JSON, or "" when it had none.
func mergePrometheus(pod *corev1.Pod) (string, error) {
	a := pod.Annotations
	if scrape, err := strconv.ParseBool(a[annoPromScrape]); err == nil && !scrape {
		return "", nil
	}
	app := appScrape{Scrape: a[annoPromScrape], Path: a[annoPromPath], Port: a[annoPromPort]}
	if app.Port != "" {
		n, err := strconv.Atoi(app.Port)
		if err != nil || n < 1 || n > 65535 {
			return "", annotationErr(annoPromPort, fmt.Errorf("%q is not a port number", app.Port))
		}
		if what, ok := reservedPorts[int32(n)]; ok {
			return "", annotationErr(annoPromPort, fmt.Errorf("%d is the sidecar's %s port; the application's metrics must be on its own port", n, what))
		}
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[annoPromPort] = strconv.Itoa(statusPort)
	pod.Annotations[annoPromPath] = prometheusPath
	pod.Annotations[annoPromScrape] = "true"
	if app == (appScrape{}) {
		return "", nil
	}
	b, _ := json.Marshal(app) // strings only
	return string(b), nil
}
