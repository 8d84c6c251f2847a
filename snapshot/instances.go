package snapshot

import (
	"strings"

	"github.com/librarymesh/controlplane/registry"
)

// instance is one instance of a service at a workload's address: the port
// it serves a service port on and its labels.
type instance struct {
	target uint32
	labels map[string]string
}

// servedInstances are the instances at workload w's address that serve
// port of svc: w itself first, then, for a VM, the other VM endpoints of
// its namespace at its address (two WorkloadEntries or ServiceEntry
// endpoints on one IP with different ports are two instances on one VM,
// served by the one sidecar there). A pod serves only its own ports.
func (b *Builder) servedInstances(w *registry.Workload, svc *registry.Service, port registry.Port) []instance {
	out := []instance{{target: port.ServedOn(w.Ports), labels: w.Labels}}
	if !isVM(w) {
		return out
	}
	for _, ep := range b.view.Endpoints(svc.Hostname) {
		if ep.Address == w.Address && ep.Namespace == w.Namespace && isVMEndpoint(ep) {
			out = append(out, instance{target: ep.PortFor(port), labels: ep.Labels})
		}
	}
	return out
}

// isVMEndpoint reports whether a VM (a WorkloadEntry or ServiceEntry
// endpoint) serves ep.
func isVMEndpoint(ep *registry.Endpoint) bool {
	return strings.HasPrefix(ep.Workload, registry.KindWorkloadEntry+" ") || strings.HasPrefix(ep.Workload, registry.KindServiceEntry+" ")
}

// nameNumber is the port number in the names of an inbound port's listener
// and cluster: the service port for the first instance, the instance's own
// port for the others (so two instances of one service port on a VM get
// names of their own).
func nameNumber(first bool, port registry.Port, target uint32) uint32 {
	if first {
		return port.Number
	}
	return target
}
