package server

import "github.com/librarymesh/controlplane/registry"

// affected says which proxies a batch of changes needs rebuilt.
type affected struct {
	all       bool
	endpoints map[string]bool // hosts whose endpoints alone changed
	ips       map[string]bool // addresses of those hosts' endpoints, before and after
}

// addIPs records the endpoint addresses of the changed hosts in a view.
func (a *affected) addIPs(v registry.View) {
	if a.all {
		return
	}
	if a.ips == nil {
		a.ips = map[string]bool{}
	}
	for h := range a.endpoints {
		for _, ep := range v.Endpoints(h) {
			a.ips[ep.Address] = true
		}
	}
}

// affectedBy folds changes. Anything but an endpoints-only change of known
// hosts rebuilds every proxy: every sidecar sees every service, and a
// policy or workload change may alter any listener. Content versions keep
// unchanged types from being resent either way.
func affectedBy(changes []Change) affected {
	a := affected{endpoints: map[string]bool{}}
	if len(changes) == 0 {
		a.all = true
		return a
	}
	for _, c := range changes {
		if c.All || c.Policy || !c.EndpointsOnly || len(c.Workloads) > 0 || len(c.Hostnames) == 0 {
			a.all = true
			return a
		}
		for _, h := range c.Hostnames {
			a.endpoints[h] = true
		}
	}
	return a
}

// matches reports whether a proxy needs a rebuild. For an endpoints-only
// change that is a proxy with EDS for a changed host, or one that is itself
// an endpoint of a changed host (its inbound side and kind may change), or
// one whose last build failed.
func (a affected) matches(e *proxyEntry) bool {
	if a.all || e.snap == nil || e.err != nil {
		return true
	}
	for h := range a.endpoints {
		if e.edsHosts[h] {
			return true
		}
	}
	for _, ip := range e.proxy.IPs {
		if a.ips[ip] {
			return true
		}
	}
	return false
}
