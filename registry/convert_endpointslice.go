package registry

import (
	"fmt"
	"net/netip"

	discoveryv1 "k8s.io/api/discovery/v1"
)

// endpointSlice converts the endpoints of an EndpointSlice. The pod's labels
// and service account are filled in from the Pod when the view is built.
func (c *converter) endpointSlice(key ObjectKey, es *discoveryv1.EndpointSlice, p *problems) *record {
	svcName := es.Labels[discoveryv1.LabelServiceName]
	if svcName == "" {
		p.add("metadata.labels", "MissingServiceName", "label %s is required", discoveryv1.LabelServiceName)
		return nil
	}
	if es.AddressType == discoveryv1.AddressTypeFQDN {
		return &record{} // Kubernetes does not use FQDN slices for Services either
	}
	host := c.kubeHostname(key.Namespace, svcName)
	ports := slicePorts(es.Ports, p)
	rec := &record{}
	for i, ep := range es.Endpoints {
		for j, addr := range ep.Addresses {
			a, err := netip.ParseAddr(addr)
			if err != nil {
				p.add(fmt.Sprintf("endpoints[%d].addresses[%d]", i, j), "InvalidAddress", "%q is not an IP address", addr)
				continue
			}
			rec.Endpoints = append(rec.Endpoints, sliceEndpoint(key, host, a.String(), ep, ports))
		}
	}
	return rec
}

func slicePorts(in []discoveryv1.EndpointPort, p *problems) map[string]uint32 {
	ports := map[string]uint32{}
	for i, ep := range in {
		if ep.Port == nil {
			continue // all ports
		}
		if *ep.Port <= 0 || *ep.Port > 65535 {
			p.add(fmt.Sprintf("ports[%d].port", i), "InvalidPort", "port %d is not in 1-65535", *ep.Port)
			continue
		}
		name := ""
		if ep.Name != nil {
			name = *ep.Name
		}
		ports[name] = uint32(*ep.Port)
	}
	return ports
}

func sliceEndpoint(key ObjectKey, host, addr string, ep discoveryv1.Endpoint, ports map[string]uint32) *endpointRow {
	e := &Endpoint{
		Hostname:  host,
		Namespace: key.Namespace,
		Address:   addr,
		Ports:     ports,
		Ready:     ep.Conditions.Ready == nil || *ep.Conditions.Ready,
	}
	row := &endpointRow{Hostname: host, Address: addr, Endpoint: e}
	if ref := ep.TargetRef; ref != nil && ref.Kind == KindPod {
		ns := ref.Namespace
		if ns == "" {
			ns = key.Namespace
		}
		row.PodRef = ns + "/" + ref.Name
		e.Workload = "Pod " + row.PodRef
	}
	return row
}
