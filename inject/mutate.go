package inject

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

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
	if i := gatewayProxy(pod); i >= 0 {
		return mutateGateway(cfg, pod, namespace, i, res)
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
	add, err := injectPod(cfg, o, pod, namespace)
	if err != nil {
		return refuse(err)
	}
	if p := pod.Spec.DNSPolicy; p != "" && p != corev1.DNSClusterFirst {
		res.Warnings = append(res.Warnings, fmt.Sprintf("spec.dnsPolicy is %s, not ClusterFirst: the sidecar may not resolve %s", p, cfg.DiscoveryAddress))
	}
	if res.Patch, err = patchFor(pod, add); err != nil {
		return res, err
	}
	return res, nil
}

// addition is what the sidecar adds to a pod: the labels and annotations
// it ends with, and the containers and volumes to insert.
type addition struct {
	labels, annotations map[string]string
	initFirst, initLast []corev1.Container // before and after the pod's own
	containers          []corev1.Container // after the pod's own
	volumes             []corev1.Volume
	replace             map[string]any // JSON pointer -> value (the gateway template's istio-proxy)
}

// injectPod returns what the sidecar adds to pod (which is not modified).
func injectPod(cfg Config, o options, pod *corev1.Pod, namespace string) (addition, error) {
	meta := &corev1.Pod{ObjectMeta: *pod.ObjectMeta.DeepCopy(), Spec: pod.Spec}
	w := workloadOf(pod, namespace)
	if name := pod.Labels[workloadNameLabel]; name != "" {
		w.name = name
	}
	appScrape, err := mergePrometheus(meta)
	if err != nil {
		return addition{}, err
	}
	proxy := proxyContainer(cfg, o, pod, w)
	if appScrape != "" {
		proxy.Env = append(proxy.Env, corev1.EnvVar{Name: "ISTIO_PROMETHEUS_ANNOTATIONS", Value: appScrape})
	}
	setMetadata(cfg, meta, w)
	meta.Annotations[StatusAnnotation] = status(cfg, o)
	add := addition{labels: meta.Labels, annotations: meta.Annotations}
	var capture []corev1.Container
	if o.mode != modeNone {
		capture = append(capture, initContainer(o))
	}
	if o.native {
		// Istio's order: capture, then the proxy, then the pod's own init
		// containers, so they run inside the mesh.
		add.initFirst = append(capture, proxy)
	} else {
		// Capture last, so the pod's own init containers are not captured
		// before a proxy runs; the proxy last among the containers.
		add.initLast, add.containers = capture, []corev1.Container{proxy}
	}
	for _, v := range sidecarVolumes() {
		add.volumes = append(add.volumes, v.volume)
	}
	return add, nil
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
	s := sidecarStatus{Revision: cfg.Revision}
	if o.mode != modeNone {
		s.InitContainers = []string{InitContainerName}
	}
	if o.native {
		s.InitContainers = append(s.InitContainers, ProxyContainerName)
	} else {
		s.Containers = []string{ProxyContainerName}
	}
	for _, v := range sidecarVolumes() {
		s.Volumes = append(s.Volumes, v.volume.Name)
	}
	b, _ := json.Marshal(s) // strings only
	return string(b)
}

// jsonOp is one JSON patch (RFC 6902) operation.
type jsonOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// patchFor is the JSON patch that makes add to pod. It only adds: map keys,
// and whole list elements at the start or the end, so it never rewrites an
// element of the pod's own (nor fields of it this build does not know);
// the one exception is the gateway template's istio-proxy placeholder,
// replaced whole.
func patchFor(pod *corev1.Pod, add addition) ([]byte, error) {
	var ops []jsonOp
	ops = mapOps(ops, "/metadata/labels", pod.Labels, add.labels)
	ops = mapOps(ops, "/metadata/annotations", pod.Annotations, add.annotations)
	ops = listOps(ops, "/spec/initContainers", len(pod.Spec.InitContainers), add.initFirst, add.initLast)
	ops = listOps(ops, "/spec/containers", len(pod.Spec.Containers), nil, add.containers)
	ops = listOps(ops, "/spec/volumes", len(pod.Spec.Volumes), nil, add.volumes)
	for _, path := range slices.Sorted(maps.Keys(add.replace)) {
		ops = append(ops, jsonOp{"replace", path, add.replace[path]})
	}
	b, err := json.Marshal(ops)
	if err != nil {
		return nil, fmt.Errorf("encode patch: %w", err)
	}
	return b, nil
}

// mapOps sets the keys of want that have differs on; a missing map is
// added whole.
func mapOps(ops []jsonOp, path string, have, want map[string]string) []jsonOp {
	if have == nil {
		return append(ops, jsonOp{"add", path, want})
	}
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if v, ok := have[k]; !ok || v != want[k] {
			ops = append(ops, jsonOp{"add", path + "/" + pointerEscape(k), want[k]})
		}
	}
	return ops
}

// listOps inserts first at the start and last at the end of a list of
// have elements; an empty (or missing) list is set whole.
func listOps[T any](ops []jsonOp, path string, have int, first, last []T) []jsonOp {
	if have == 0 {
		if all := slices.Concat(first, last); len(all) > 0 {
			ops = append(ops, jsonOp{"add", path, all})
		}
		return ops
	}
	for i, v := range first {
		ops = append(ops, jsonOp{"add", path + "/" + strconv.Itoa(i), v})
	}
	for _, v := range last {
		ops = append(ops, jsonOp{"add", path + "/-", v})
	}
	return ops
}

// pointerEscape escapes a map key for a JSON pointer (RFC 6901).
func pointerEscape(k string) string {
	return strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
}
