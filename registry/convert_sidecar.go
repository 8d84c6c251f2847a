package registry

import (
	"fmt"
	"maps"
	"time"

	networkingapi "istio.io/api/networking/v1alpha3"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
)

// ReasonUnsupportedField: a field the control plane reads but does not
// apply yet; the rest of the object is in force.
const ReasonUnsupportedField = "UnsupportedField"

// sidecar converts a Sidecar. A bad egress listener rejects the object
// (its last good version stays); fields not applied yet (ingress, bind,
// captureMode, egressProxy, inboundConnectionPool) are warnings.
func (c *converter) sidecar(key ObjectKey, sc *networkingapi.Sidecar, obj runtime.Object, p *problems) *record {
	out := &Sidecar{Namespace: key.Namespace, Name: key.Name, Created: creationTime(obj)}
	if ws := sc.GetWorkloadSelector(); ws != nil {
		out.Selector = maps.Clone(ws.GetLabels())
		if len(out.Selector) == 0 {
			p.add("spec.workloadSelector.labels", "MissingLabels", "a workloadSelector needs at least one label (omit it to apply to the whole namespace)")
		}
	}
	if otp := sc.GetOutboundTrafficPolicy(); otp != nil {
		out.OutboundPolicy = OutboundRegistryOnly
		if otp.GetMode() == networkingapi.OutboundTrafficPolicy_ALLOW_ANY {
			out.OutboundPolicy = OutboundAllowAny
		}
		if otp.GetEgressProxy() != nil {
			p.add("spec.outboundTrafficPolicy.egressProxy", ReasonUnsupportedField, "egressProxy is not supported yet; ignored")
		}
	}
	if len(sc.GetIngress()) > 0 {
		p.add("spec.ingress", ReasonUnsupportedField, "ingress listeners are not supported yet; ignored (inbound follows the workload's services)")
	}
	if sc.GetInboundConnectionPool() != nil {
		p.add("spec.inboundConnectionPool", ReasonUnsupportedField, "inboundConnectionPool is not supported yet; ignored")
	}
	out.Egress = sidecarEgress(sc.GetEgress(), p)
	return &record{Policies: []*policyRow{{Namespace: key.Namespace, Sidecar: out}}}
}

// sidecarEgress converts the egress listeners: at most one without a port,
// each with at least one valid host.
func sidecarEgress(listeners []*networkingapi.IstioEgressListener, p *problems) []Egress {
	var out []Egress
	catchAll, ports := -1, map[uint32]int{}
	for i, l := range listeners {
		field := fmt.Sprintf("spec.egress[%d]", i)
		e := Egress{Port: l.GetPort().GetNumber()}
		j, dup := ports[e.Port]
		switch {
		case l.GetPort() != nil && (e.Port == 0 || e.Port > 65535):
			p.add(field+".port.number", "InvalidPort", "port %d is not in 1-65535", e.Port)
		case l.GetPort() == nil && catchAll >= 0:
			p.add(field+".port", "DuplicateEgress", "only one egress listener may omit the port; spec.egress[%d] already does", catchAll)
		case l.GetPort() != nil && dup:
			p.add(field+".port.number", "DuplicateEgress", "port %d is already the port of spec.egress[%d]", e.Port, j)
		}
		if l.GetPort() == nil && catchAll < 0 {
			catchAll = i
		} else if l.GetPort() != nil && !dup {
			ports[e.Port] = i
		}
		if l.GetBind() != "" || l.GetCaptureMode() != networkingapi.CaptureMode_DEFAULT {
			p.add(field, ReasonUnsupportedField, "bind and captureMode are not supported yet; ignored")
		}
		if len(l.GetHosts()) == 0 {
			p.add(field+".hosts", "MissingHosts", "an egress listener needs at least one host")
		}
		for j, h := range l.GetHosts() {
			eh, err := ParseEgressHost(h)
			if err != nil {
				p.add(fmt.Sprintf("%s.hosts[%d]", field, j), "InvalidEgressHost", "%v", err)
				continue
			}
			e.Hosts = append(e.Hosts, eh)
		}
		out = append(out, e)
	}
	return out
}

// creationTime is obj's creationTimestamp, zero when it has none.
func creationTime(obj runtime.Object) time.Time {
	m, err := meta.Accessor(obj)
	if err != nil {
		return time.Time{}
	}
	return m.GetCreationTimestamp().Time
}
