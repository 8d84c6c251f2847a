package registry

import (
	"fmt"
	"maps"
	"slices"

	securityapi "istio.io/api/security/v1beta1"
)

// peerAuthentication converts a PeerAuthentication.
func (c *converter) peerAuthentication(key ObjectKey, pa *securityapi.PeerAuthentication, p *problems) *record {
	out := &PeerAuthentication{
		Namespace: key.Namespace,
		Name:      key.Name,
		Selector:  maps.Clone(pa.GetSelector().GetMatchLabels()),
		Mode:      mtlsMode(pa.GetMtls().GetMode()),
	}
	if len(pa.GetPortLevelMtls()) > 0 && len(out.Selector) == 0 {
		p.add("spec.portLevelMtls", "PortLevelWithoutSelector", "portLevelMtls needs a workload selector")
	}
	for _, port := range slices.Sorted(maps.Keys(pa.GetPortLevelMtls())) {
		if port == 0 || port > 65535 {
			p.add(fmt.Sprintf("spec.portLevelMtls[%d]", port), "InvalidPort", "port %d is not in 1-65535", port)
			continue
		}
		if out.PortModes == nil {
			out.PortModes = map[uint32]MTLSMode{}
		}
		out.PortModes[port] = mtlsMode(pa.GetPortLevelMtls()[port].GetMode())
	}
	return &record{Policies: []*policyRow{{Namespace: key.Namespace, PeerAuth: out}}}
}

func mtlsMode(m securityapi.PeerAuthentication_MutualTLS_Mode) MTLSMode {
	switch m {
	case securityapi.PeerAuthentication_MutualTLS_DISABLE:
		return MTLSDisable
	case securityapi.PeerAuthentication_MutualTLS_PERMISSIVE:
		return MTLSPermissive
	case securityapi.PeerAuthentication_MutualTLS_STRICT:
		return MTLSStrict
	}
	return MTLSUnset
}
