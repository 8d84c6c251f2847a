package statuspage

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/librarymesh/controlplane/registry"
)

// endpointRow is one endpoint of a service.
type endpointRow struct {
	Address  string `json:"address"`
	Ports    string `json:"ports"`
	Health   string `json:"health"` // healthy or unhealthy (not ready)
	Locality string `json:"locality,omitempty"`
	Source   string `json:"source"` // the workload or object it came from
}

// serviceRow is one service of the model.
type serviceRow struct {
	Host       string        `json:"host"`
	Namespace  string        `json:"namespace"`
	Addresses  []string      `json:"addresses"`
	Ports      []string      `json:"ports"`
	Resolution string        `json:"resolution"`
	Location   string        `json:"location"`
	Sources    []string      `json:"sources"`
	Endpoints  []endpointRow `json:"endpoints"`
	Policies   []string      `json:"policies"`
}

// serviceList is the services view.
type serviceList struct {
	Q        string       `json:"q"`
	Revision uint64       `json:"revision"`
	Total    int          `json:"total"`
	Rows     []serviceRow `json:"rows"`
}

// rootNamespace is where mesh-wide policy lives (snapshot.Options' default).
const rootNamespace = "istio-system"

// services lists the services whose host or namespace contains q.
func (p *Page) services(q string) serviceList {
	v := p.cfg.Model.View()
	svcs := v.Services()
	out := serviceList{Q: q, Revision: v.Revision(), Total: len(svcs), Rows: []serviceRow{}}
	needle := strings.ToLower(q)
	for _, svc := range svcs {
		if needle != "" && !strings.Contains(strings.ToLower(svc.Hostname+" "+svc.Namespace), needle) {
			continue
		}
		out.Rows = append(out.Rows, serviceOf(v, svc))
	}
	return out
}

func serviceOf(v registry.View, svc *registry.Service) serviceRow {
	r := serviceRow{Host: svc.Hostname, Namespace: svc.Namespace, Addresses: svc.Addresses, Resolution: svc.Resolution.String(),
		Location: svc.Location.String(), Sources: svc.Sources, Endpoints: []endpointRow{}, Policies: policies(v, svc)}
	for _, port := range svc.Ports {
		r.Ports = append(r.Ports, fmt.Sprintf("%d/%s %s", port.Number, port.Protocol, port.Name))
	}
	for _, ep := range v.Endpoints(svc.Hostname) {
		e := endpointRow{Address: ep.Address, Health: "healthy", Locality: ep.Locality, Source: cmp.Or(ep.Workload, strings.Join(svc.Sources, ", "))}
		if !ep.Ready {
			e.Health = "unhealthy"
		}
		var ports []string
		for _, port := range svc.Ports {
			ports = append(ports, fmt.Sprint(ep.PortFor(port)))
		}
		e.Ports = strings.Join(ports, ", ")
		r.Endpoints = append(r.Endpoints, e)
	}
	return r
}

// policies names the policy objects that may apply to the service: the
// DestinationRules and VirtualServices naming its host, and the
// PeerAuthentications and AuthorizationPolicies of its namespace and of
// the root namespace that select all of its workloads or some of its
// endpoints.
func policies(v registry.View, svc *registry.Service) []string {
	out := []string{}
	for _, dr := range v.DestinationRules() {
		if hostMatches(dr.Host, svc.Hostname) {
			out = append(out, "DestinationRule "+dr.Namespace+"/"+dr.Name)
		}
	}
	for _, vs := range v.VirtualServices() {
		if slices.ContainsFunc(vs.Hosts, func(h string) bool { return hostMatches(h, svc.Hostname) }) {
			out = append(out, "VirtualService "+vs.Namespace+"/"+vs.Name)
		}
	}
	eps := v.Endpoints(svc.Hostname)
	applies := func(ns string, selector map[string]string) bool {
		if ns != svc.Namespace && ns != rootNamespace {
			return false
		}
		return selector == nil || slices.ContainsFunc(eps, func(ep *registry.Endpoint) bool { return selects(selector, ep.Labels) })
	}
	for _, pa := range v.PeerAuthentications() {
		if applies(pa.Namespace, pa.Selector) {
			out = append(out, "PeerAuthentication "+pa.Namespace+"/"+pa.Name)
		}
	}
	for _, ap := range v.AuthorizationPolicies() {
		if applies(ap.Namespace, ap.Selector) {
			out = append(out, "AuthorizationPolicy "+ap.Namespace+"/"+ap.Name)
		}
	}
	return out
}

// selects reports whether labels has every key and value of selector.
func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// hostMatches reports whether a policy host (maybe "*.suffix" or "*")
// names host.
func hostMatches(pattern, host string) bool {
	if pattern == "*" {
		return true
	}
	if suffix, ok := strings.CutPrefix(pattern, "*"); ok {
		return strings.HasSuffix(host, suffix)
	}
	return pattern == host
}
