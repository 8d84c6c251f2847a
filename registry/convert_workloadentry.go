package registry

import (
	"fmt"
	"maps"
	"slices"

	networkingapi "istio.io/api/networking/v1alpha3"
)

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
