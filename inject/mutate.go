package inject

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
)

// Labels and annotations the injector sets.
const (
	tlsModeLabel           = "security.istio.io/tlsMode"
	canonicalNameLabel     = "service.istio.io/canonical-name"
	canonicalRevisionLabel = "service.istio.io/canonical-revision"
	workloadNameLabel      = "service.istio.io/workload-name"
	defaultContainerAnno   = "kubectl.kubernetes.io/default-container"
	defaultLogsAnno        = "kubectl.kubernetes.io/default-logs-container"
)

// Result is what Mutate decided for one pod.
type Result struct {
	// Patch is the JSON patch (RFC 6902) that injects the sidecar; nil when
	// the pod is left unchanged.
	Patch []byte
	// Skipped says why the pod is left unchanged ("" when injected).
	Skipped string
	// Warnings are for the user who created the pod.
	Warnings []string
}

// Refusal is a pod the sidecar cannot be added to; its message names the
// pod and every field in the way.
type Refusal struct {
	Pod string // namespace/name
	Err error
}

func (r *Refusal) Error() string {
	return fmt.Sprintf("sidecar injection into pod %s: %v (fix the field, or set %s: \"false\" to create the pod without a sidecar)",
		r.Pod, strings.ReplaceAll(r.Err.Error(), "\n", "; "), InjectKey)
}

func (r *Refusal) Unwrap() error { return r.Err }

// Mutate decides whether pod, created in namespace, gets the sidecar and
// returns the patch that adds it. A pod the template cannot handle is a
// *Refusal. pod is not modified.
func Mutate(cfg Config, pod *corev1.Pod, namespace string) (Result, error) {
	cfg = cfg.withDefaults()
	var res Result
	if res.Skipped = skipReason(pod, namespace, &res.Warnings); res.Skipped != "" {
		return res, nil
	}
	refuse := func(err error) (Result, error) {
		return res, &Refusal{Pod: namespace + "/" + podName(pod), Err: err}
	}
	skip, err := existingProxy(cfg, pod)
	if err != nil || skip != "" {
		res.Skipped = skip
		if err != nil {
			return refuse(err)
		}
		return res, nil
	}
	o, err := parseOptions(cfg, pod)
	if err = errors.Join(err, conflicts(pod)); err != nil {
		return refuse(err)
	}
	injected := pod.DeepCopy()
	if err := injectPod(cfg, o, injected, namespace); err != nil {
		return refuse(err)
	}
	if p := pod.Spec.DNSPolicy; p != "" && p != corev1.DNSClusterFirst {
		res.Warnings = append(res.Warnings, fmt.Sprintf("spec.dnsPolicy is %s, not ClusterFirst: the sidecar may not resolve %s", p, cfg.DiscoveryAddress))
	}
	if res.Patch, err = createPatch(pod, injected); err != nil {
		return res, err
	}
	return res, nil
}

// injectPod adds the sidecar to pod (a copy) and sets Istio's labels and
// annotations.
func injectPod(cfg Config, o options, pod *corev1.Pod, namespace string) error {
	w := workloadOf(pod, namespace)
	if name := pod.Labels[workloadNameLabel]; name != "" {
		w.name = name
	}
	appScrape, err := mergePrometheus(pod)
	if err != nil {
		return err
	}
	proxy := proxyContainer(cfg, o, pod, w)
	if appScrape != "" {
		proxy.Env = append(proxy.Env, corev1.EnvVar{Name: "ISTIO_PROMETHEUS_ANNOTATIONS", Value: appScrape})
	}
	setMetadata(cfg, pod, w)
	if o.mode != modeNone {
		pod.Spec.InitContainers = append(pod.Spec.InitContainers, initContainer(o))
	}
	pod.Spec.Containers = append(pod.Spec.Containers, proxy)
	for _, v := range sidecarVolumes() {
		pod.Spec.Volumes = append(pod.Spec.Volumes, v.volume)
	}
	pod.Annotations[StatusAnnotation] = status(cfg, o)
	return nil
}

// setMetadata sets the labels and annotations Istio's template sets,
// keeping the pod's own values.
func setMetadata(cfg Config, pod *corev1.Pod, w workload) {
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	l := pod.Labels
	setDefault(l, tlsModeLabel, "istio")
	setDefault(l, canonicalNameLabel, canonicalName(firstOf(l["app.kubernetes.io/name"], l["app"], w.name)))
	setDefault(l, canonicalRevisionLabel, firstOf(l["app.kubernetes.io/version"], l["version"], "latest"))
	pod.Annotations[RevisionKey] = cfg.Revision
	if apps := appContainers(pod); len(apps) > 0 {
		setDefault(pod.Annotations, defaultLogsAnno, apps[0])
		setDefault(pod.Annotations, defaultContainerAnno, apps[0])
	}
}

func setDefault(m map[string]string, k, v string) {
	if _, ok := m[k]; !ok {
		m[k] = v
	}
}

func firstOf(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// canonicalName is trimmed as Istio's template does (63 characters, no
// leading or trailing '-', '_' or '.').
func canonicalName(s string) string {
	if len(s) > 63 {
		s = s[:63]
	}
	return strings.Trim(s, "-_.")
}

// sidecarStatus is the value of StatusAnnotation, Istio's shape.
type sidecarStatus struct {
	InitContainers   []string `json:"initContainers"`
	Containers       []string `json:"containers"`
	Volumes          []string `json:"volumes"`
	ImagePullSecrets []string `json:"imagePullSecrets"`
	Revision         string   `json:"revision"`
}

func status(cfg Config, o options) string {
	s := sidecarStatus{Containers: []string{ProxyContainerName}, Revision: cfg.Revision}
	if o.mode != modeNone {
		s.InitContainers = []string{InitContainerName}
	}
	for _, v := range sidecarVolumes() {
		s.Volumes = append(s.Volumes, v.volume.Name)
	}
	b, _ := json.Marshal(s) // strings only
	return string(b)
}

// createPatch is the JSON patch from pod to injected.
func createPatch(pod, injected *corev1.Pod) ([]byte, error) {
	before, err := json.Marshal(pod)
	if err != nil {
		return nil, fmt.Errorf("encode pod: %w", err)
	}
	after, err := json.Marshal(injected)
	if err != nil {
		return nil, fmt.Errorf("encode injected pod: %w", err)
	}
	ops, err := jsonpatch.CreatePatch(before, after)
	if err != nil {
		return nil, fmt.Errorf("create patch: %w", err)
	}
	b, err := json.Marshal(ops)
	if err != nil {
		return nil, fmt.Errorf("encode patch: %w", err)
	}
	return b, nil
}
