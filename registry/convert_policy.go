package registry

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	networkingapi "istio.io/api/networking/v1alpha3"
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

// destinationRule converts a DestinationRule. A short host name is
// qualified with the rule's namespace, as Istio does.
func (c *converter) destinationRule(key ObjectKey, dr *networkingapi.DestinationRule, p *problems) *record {
	host := strings.ToLower(strings.TrimSpace(dr.GetHost()))
	if host == "" {
		p.add("spec.host", "MissingHost", "host is required")
		return nil
	}
	if !strings.Contains(host, ".") && host != "*" {
		host = c.kubeHostname(key.Namespace, host)
	}
	tls := dr.GetTrafficPolicy().GetTls()
	out := &DestinationRule{
		Namespace:       key.Namespace,
		Name:            key.Name,
		Host:            host,
		SNI:             tls.GetSni(),
		SubjectAltNames: slices.Clone(tls.GetSubjectAltNames()),
		ExportTo:        slices.Clone(dr.GetExportTo()),
	}
	if tls != nil {
		out.TLSMode = clientTLSMode(tls.GetMode())
	}
	names := map[string]int{}
	for i, s := range dr.GetSubsets() {
		field := fmt.Sprintf("spec.subsets[%d].name", i)
		if s.GetName() == "" {
			p.add(field, "MissingSubsetName", "subset name is required")
			continue
		}
		if j, dup := names[s.GetName()]; dup {
			p.add(field, "DuplicateSubset", "subset %q is already defined by spec.subsets[%d]", s.GetName(), j)
			continue
		}
		names[s.GetName()] = i
		out.Subsets = append(out.Subsets, Subset{Name: s.GetName(), Labels: maps.Clone(s.GetLabels())})
	}
	return &record{Policies: []*policyRow{{Namespace: key.Namespace, DestRule: out}}}
}

func clientTLSMode(m networkingapi.ClientTLSSettings_TLSmode) ClientTLSMode {
	switch m {
	case networkingapi.ClientTLSSettings_SIMPLE:
		return ClientTLSSimple
	case networkingapi.ClientTLSSettings_MUTUAL:
		return ClientTLSMutual
	case networkingapi.ClientTLSSettings_ISTIO_MUTUAL:
		return ClientTLSIstioMutual
	}
	return ClientTLSDisable
}
