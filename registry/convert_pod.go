package registry

import (
	"maps"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// pod converts a Pod into a workload, found by its IPs. Pods without an IP,
// on the host network, or finished are not workloads.
func (c *converter) pod(key ObjectKey, pod *corev1.Pod, p *problems) *record {
	if pod.Spec.HostNetwork || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return &record{}
	}
	addrs := podIPs(pod)
	if len(addrs) == 0 {
		return &record{}
	}
	w := &Workload{
		Kind:           KindPod,
		Namespace:      key.Namespace,
		Name:           key.Name,
		Address:        addrs[0],
		Labels:         maps.Clone(pod.Labels),
		ServiceAccount: pod.Spec.ServiceAccountName,
		Ports:          containerPorts(pod),
		Locality:       podLocality(pod.Labels),
		TLSMode:        workloadTLSMode("metadata.labels", pod.Labels, pod.Annotations, p),
	}
	if w.ServiceAccount == "" {
		w.ServiceAccount = "default"
	}
	row := &workloadRow{Field: "status.podIP", Namespace: key.Namespace, Addresses: addrs, PodRef: key.Namespace + "/" + key.Name,
		Ready: podReady(pod), Workload: w}
	return &record{Workloads: []*workloadRow{row}}
}

// LabelLocality is Istio's pod label for a workload's locality, with dots
// between region, zone and subzone (a label value cannot hold '/').
const LabelLocality = "istio-locality"

// podLocality is a pod's `region/zone/subzone`: Istio's istio-locality
// label, else the topology labels on the pod (the control plane does not
// watch Nodes, whose labels Istio reads next).
func podLocality(labels map[string]string) string {
	if l := labels[LabelLocality]; l != "" {
		return strings.ReplaceAll(l, ".", "/")
	}
	return LocalityString(labels[LabelTopologyRegion], labels[LabelTopologyZone], labels[LabelTopologySubzone])
}

// LocalityString joins region, zone and subzone as Istio writes a
// locality, leaving out empty trailing parts.
func LocalityString(region, zone, subzone string) string {
	return strings.TrimRight(region+"/"+zone+"/"+subzone, "/")
}

func podIPs(pod *corev1.Pod) []string {
	var out []string
	add := func(s string) {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return
		}
		for _, o := range out {
			if o == a.String() {
				return
			}
		}
		out = append(out, a.String())
	}
	add(pod.Status.PodIP)
	for _, ip := range pod.Status.PodIPs {
		add(ip.IP)
	}
	return out
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return pod.Status.Phase == corev1.PodRunning
}

// containerPorts maps named container ports to their numbers.
func containerPorts(pod *corev1.Pod) map[string]uint32 {
	var out map[string]uint32
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == "" || p.ContainerPort <= 0 {
				continue
			}
			if out == nil {
				out = map[string]uint32{}
			}
			out[p.Name] = uint32(p.ContainerPort)
		}
	}
	return out
}
