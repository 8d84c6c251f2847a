package registry

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// kubeHostname is the FQDN of a Kubernetes Service.
func (c *converter) kubeHostname(namespace, name string) string {
	return name + "." + namespace + ".svc." + c.domainSuffix
}

// service converts a Kubernetes Service into one service row.
func (c *converter) service(key ObjectKey, svc *corev1.Service, p *problems) *record {
	row := &serviceRow{
		Kind:       KindService,
		Namespace:  key.Namespace,
		Name:       key.Name,
		Hostname:   c.kubeHostname(key.Namespace, key.Name),
		Resolution: ResolutionStatic,
		Location:   MeshInternal,
		Selector:   maps.Clone(svc.Spec.Selector),
		ExportTo:   serviceExportTo(svc, key.Namespace, p),
	}
	row.Ports = servicePorts(svc.Spec.Ports, p)
	switch {
	case svc.Spec.Type == corev1.ServiceTypeExternalName:
		row.Resolution = ResolutionDNS
	case svc.Spec.ClusterIP == corev1.ClusterIPNone:
		row.Resolution = ResolutionNone // headless: pass through to the pod IP
	default:
		row.Addresses = clusterIPs(svc, p)
	}
	rec := &record{Services: []*serviceRow{row}}
	if row.Resolution == ResolutionDNS && svc.Spec.ExternalName != "" {
		rec.Endpoints = []*endpointRow{{
			Hostname: row.Hostname, Address: svc.Spec.ExternalName,
			Endpoint: &Endpoint{Hostname: row.Hostname, Namespace: key.Namespace, Address: svc.Spec.ExternalName, Ready: true},
		}}
	}
	return rec
}

// ExportToAnnotation is Istio's exportTo for a Kubernetes Service: a
// comma-separated list as in ServiceEntry's spec.exportTo.
const ExportToAnnotation = "networking.istio.io/exportTo"

func serviceExportTo(svc *corev1.Service, ns string, p *problems) []string {
	v, ok := svc.Annotations[ExportToAnnotation]
	if !ok {
		return nil
	}
	return parseExportTo("metadata.annotations["+ExportToAnnotation+"]", strings.Split(v, ","), ns, p)
}

func clusterIPs(svc *corev1.Service, p *problems) []string {
	ips := svc.Spec.ClusterIPs
	field := "spec.clusterIPs"
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips, field = []string{svc.Spec.ClusterIP}, "spec.clusterIP"
	}
	var out []string
	for i, ip := range ips {
		if ip == "" || ip == corev1.ClusterIPNone {
			continue
		}
		a, err := netip.ParseAddr(ip)
		if err != nil {
			p.add(indexed(field, i, len(svc.Spec.ClusterIPs) > 0), "InvalidAddress", "cluster IP %q is not an IP address", ip)
			continue
		}
		out = append(out, a.String())
	}
	return out
}

func indexed(field string, i int, isList bool) string {
	if !isList {
		return field
	}
	return fmt.Sprintf("%s[%d]", field, i)
}

// servicePorts converts Service ports, reporting bad numbers and clashes.
func servicePorts(in []corev1.ServicePort, p *problems) []Port {
	out := make([]Port, 0, len(in))
	seen := map[uint32]int{}
	names := map[string]int{}
	for i, sp := range in {
		field := fmt.Sprintf("spec.ports[%d]", i)
		if sp.Port <= 0 || sp.Port > 65535 {
			p.add(field+".port", "InvalidPort", "port %d is not in 1-65535", sp.Port)
			continue
		}
		if j, dup := seen[uint32(sp.Port)]; dup && in[j].Protocol == sp.Protocol {
			p.add(field+".port", "PortClash", "port %d is already defined by spec.ports[%d]", sp.Port, j)
			continue
		}
		if j, dup := names[sp.Name]; dup {
			p.add(field+".name", "PortClash", "port name %q is already used by spec.ports[%d]", sp.Name, j)
			continue
		}
		if sp.Protocol == corev1.ProtocolSCTP {
			continue // not proxied
		}
		seen[uint32(sp.Port)], names[sp.Name] = i, i
		port := Port{Name: sp.Name, Number: uint32(sp.Port), Protocol: portProtocol(sp.AppProtocol, sp.Name, string(sp.Protocol))}
		if sp.TargetPort.IntVal > 0 {
			port.TargetPort = uint32(sp.TargetPort.IntVal)
		}
		out = append(out, port)
	}
	slices.SortFunc(out, comparePorts)
	return out
}

func comparePorts(a, b Port) int {
	if a.Number != b.Number {
		return int(a.Number) - int(b.Number)
	}
	return cmp.Compare(a.Name, b.Name)
}
