package loadtest

import (
	"fmt"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// marker is content that shows a proxy has a change: bytes that appear in a
// resource of a type only once the change is in it.
type marker struct {
	typeURL string // or routeMarker
	text    []byte
}

// routeMarker is a marker's type for routes: a route configuration, or a
// virtual host over VHDS (delta Envoy sidecars get a new service's routes so).
const routeMarker = "route"

// in reports whether the marker is looked for in responses of typeURL.
func (m marker) in(typeURL string) bool {
	return m.typeURL == typeURL || m.typeURL == routeMarker && (typeURL == rdsType || typeURL == vhdsType)
}

// change is one edit of the folder and how to recognise it at a proxy.
type change struct {
	kind    string // "endpoint" or "new-service"
	what    string
	apply   func() error
	markers []marker
	// seenBy says which proxies get the change (nil: all of them).
	seenBy func(ProxySpec) bool
}

const (
	endpointChange   = "endpoint"
	newServiceChange = "new-service"
)

// changes returns the scenario's edits: single-endpoint changes,
// alternating between a Kubernetes Service's EndpointSlice and a
// ServiceEntry's VM endpoint, then new Services with 4 pods each.
func (m *mesh) changes() []change {
	var out []change
	for i := range m.sc.EndpointChanges {
		ip := fmt.Sprintf("10.200.%d.%d", i/250, i%250+1)
		c := change{kind: endpointChange, markers: []marker{{resourcev3.EndpointType, []byte(ip)}}}
		if i%2 == 0 && m.sc.kube() > 0 {
			s := (i*7 + 3) % m.sc.kube()
			c.what = fmt.Sprintf("svc-%d endpoint 3 -> %s", s, ip)
			c.apply = func() error { m.pods[s][3] = ip; return m.writeService(s) }
			c.seenBy = m.seenBy(m.hostIndex(s, false))
		} else {
			s := (i*7 + 3) % m.sc.entries()
			c.what = fmt.Sprintf("vm-%d endpoint 1 -> %s", s, ip)
			c.apply = func() error { m.vms[s][1] = ip; return m.writeEntry(s) }
			c.seenBy = m.seenBy(m.hostIndex(s, true))
		}
		out = append(out, c)
	}
	for n := range m.sc.NewServiceChanges {
		out = append(out, m.newService(n))
	}
	return out
}

// newService is the n-th new service: a Service with 4 pods, or under
// HTTPEntries an HTTP ServiceEntry without addresses with 2 VM endpoints.
// A proxy has it once it holds its cluster, endpoints and route.
func (m *mesh) newService(n int) change {
	d := serviceData{Name: fmt.Sprintf("new-svc-%d", n), VIP: fmt.Sprintf("10.98.0.%d", n+1), Port: 8000 + n%50}
	kind, tmpl, ips := "Service", serviceTmpl, 4
	if m.sc.HTTPEntries {
		d.VIP, d.Port, kind, tmpl, ips = "", httpEntryPort, "HTTP ServiceEntry", httpEntryTmpl, 2
	}
	for j := range ips {
		d.IPs = append(d.IPs, fmt.Sprintf("10.199.%d.%d", n, j+1))
	}
	host := []byte(d.Name + ".default.svc.cluster.local")
	return change{kind: newServiceChange, what: "new " + kind + " " + d.Name,
		apply:   func() error { return m.write(d.Name+".yaml", tmpl, d) },
		markers: []marker{{resourcev3.ClusterType, host}, {resourcev3.EndpointType, host}, {routeMarker, host}}, seenBy: m.seenBy(-1)}
}
