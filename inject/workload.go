package inject

import (
	"regexp"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// workload is what controls a pod, as Istio guesses it from the pod alone:
// a Deployment from its ReplicaSet and pod-template-hash, a CronJob from
// its Job's timestamp suffix, else the controller or the pod itself.
type workload struct {
	namespace, name, kind, apiVersion string
}

var cronJobName = regexp.MustCompile(`^(.+)-\d{8,10}$`)

// workloadOf returns the pod's workload in namespace.
func workloadOf(pod *corev1.Pod, namespace string) workload {
	w := workload{namespace: namespace, name: podName(pod), kind: "Pod", apiVersion: "v1"}
	if pod.GenerateName == "" {
		return w
	}
	for _, ref := range pod.OwnerReferences {
		if ref.Controller == nil || !*ref.Controller {
			continue
		}
		w.name, w.kind, w.apiVersion = ref.Name, ref.Kind, ref.APIVersion
		hash := pod.Labels["pod-template-hash"]
		switch {
		case ref.Kind == "ReplicaSet" && hash != "" && strings.HasSuffix(ref.Name, "-"+hash):
			w.name, w.kind, w.apiVersion = strings.TrimSuffix(ref.Name, "-"+hash), "Deployment", "apps/v1"
		case ref.Kind == "Job":
			if m := cronJobName.FindStringSubmatch(ref.Name); m != nil {
				w.name, w.kind, w.apiVersion = m[1], "CronJob", "batch/v1"
			}
		}
		break
	}
	return w
}

// podName is the pod's name, or its generateName without the trailing
// dash when the API server has not named it yet.
func podName(pod *corev1.Pod) string {
	if pod.Name != "" {
		return pod.Name
	}
	return strings.TrimSuffix(pod.GenerateName, "-")
}

// owner is ISTIO_META_OWNER, e.g.
// kubernetes://apis/apps/v1/namespaces/default/deployments/hello.
func (w workload) owner() string {
	return "kubernetes://apis/" + w.apiVersion + "/namespaces/" + w.namespace + "/" + strings.ToLower(w.kind) + "s/" + w.name
}
