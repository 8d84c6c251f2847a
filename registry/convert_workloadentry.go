package registry

import (
	"fmt"
	"maps"
	"slices"

	metaapi "istio.io/api/meta/v1alpha1"
	networkingapi "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	networkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	networkingv1beta1 "istio.io/client-go/pkg/apis/networking/v1beta1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
)

// Istio's health checking of WorkloadEntries: with the annotation "true",
// the entry's workload serves only while its Healthy condition is True (an
// entry not yet reported is unhealthy, as in Istio).
const (
	AnnotationHealthChecks = "proxy.istio.io/health-checks-enabled"
	ConditionHealthy       = "Healthy"
)

// convertWorkloadEntry converts the WorkloadEntry kind (any version).
func (c *converter) convertWorkloadEntry(key ObjectKey, obj runtime.Object, p *problems) (*record, bool) {
	var spec *networkingapi.WorkloadEntry
	var status *metaapi.IstioStatus
	switch o := obj.(type) {
	case *networkingv1.WorkloadEntry:
		spec, status = &o.Spec, &o.Status
	case *networkingv1beta1.WorkloadEntry:
		spec, status = &o.Spec, &o.Status
	case *networkingv1alpha3.WorkloadEntry:
		spec, status = &o.Spec, &o.Status
	default:
		return nil, false
	}
	rec := c.workloadEntry(key, spec, p)
	if rec != nil {
		rec.Workloads[0].Workload.Unhealthy = !entryHealthy(obj, status)
	}
	return rec, true
}

// workloadEntry converts a WorkloadEntry (a VM) into a workload. It serves a
// service only when a ServiceEntry's workloadSelector picks it.
func (c *converter) workloadEntry(key ObjectKey, we *networkingapi.WorkloadEntry, p *problems) *record {
	addr, ok := checkWorkloadAddress("spec", we.GetAddress(), false, p)
	if !ok {
		return nil
	}
	for _, name := range slices.Sorted(maps.Keys(we.GetPorts())) {
		if n := we.GetPorts()[name]; n == 0 || n > 65535 {
			p.add(fmt.Sprintf("spec.ports[%s]", name), "InvalidPort", "port %d is not in 1-65535", n)
		}
	}
	w := workloadFromEntry(KindWorkloadEntry, key, addr, we)
	w.TLSMode = workloadTLSMode("spec.labels", we.GetLabels(), nil, p)
	row := &workloadRow{Field: "spec.address", Namespace: key.Namespace, Addresses: []string{addr}, Ready: true, Weight: we.GetWeight(), Workload: w}
	return &record{Workloads: []*workloadRow{row}}
}

// entryHealthy is Istio's reading of a WorkloadEntry's health: healthy
// unless health checks are enabled and the Healthy condition is not True.
func entryHealthy(obj runtime.Object, status *metaapi.IstioStatus) bool {
	m, err := meta.Accessor(obj)
	if err != nil || m.GetAnnotations()[AnnotationHealthChecks] != "true" {
		return true
	}
	for _, c := range status.GetConditions() {
		if c.GetType() == ConditionHealthy {
			return c.GetStatus() == "True"
		}
	}
	return false
}
