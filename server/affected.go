package server

import (
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/librarymesh/controlplane/registry"
)

// affected says which proxies a batch of changes needs rebuilt.
type affected struct {
	all       bool
	endpoints map[string]bool // hosts whose endpoints alone changed
	ips       map[string]bool // changed workloads, and endpoints of those hosts before and after
	// services: all is set only because of these hosts' definitions (no
	// policy, nothing unknown), with endpoints and workloads changed.
	services map[string]bool
}

// addIPs records the endpoint addresses of the changed hosts in a view.
func (a *affected) addIPs(v registry.View) {
	if a.all {
		return
	}
	for h := range a.endpoints {
		for _, ep := range v.Endpoints(h) {
			a.ips[ep.Address] = true
		}
	}
}

// affectedBy folds changes. A change of a service's definition or of
// policy rebuilds every proxy: every sidecar sees every service. An
// endpoints-only change rebuilds the proxies using those hosts, and a
// workload change the proxies at those addresses. Content versions keep
// unchanged types from being resent either way.
func affectedBy(changes []registry.Change) affected {
	a := affected{endpoints: map[string]bool{}, ips: map[string]bool{}}
	if len(changes) == 0 {
		a.all = true
		return a
	}
	services := map[string]bool{}
	for _, c := range changes {
		if c.All || c.Policy {
			a.all = true
			return a
		}
		if len(c.Hostnames) > 0 && !c.EndpointsOnly {
			a.all = true
		}
		for _, h := range c.Hostnames {
			a.endpoints[h] = true
			services[h] = true
		}
		for _, ip := range c.Workloads {
			a.ips[ip] = true
		}
	}
	if a.all {
		a.services = services
	}
	return a
}

// matches reports whether a proxy needs a rebuild. For an endpoints-only
// change that is a proxy with EDS for a changed host, or one that is itself
// an endpoint of a changed host (its inbound side and kind may change), or
// one whose last build failed.
func (a affected) matches(c *conn) bool {
	c.mu.Lock()
	snap, failed := c.snap, c.buildErr != nil
	c.mu.Unlock()
	if a.all || snap == nil || failed {
		return true
	}
	eds := snap.get(resourcev3.EndpointType)
	for h := range a.endpoints {
		if eds.hasHost(h) {
			return true
		}
	}
	for _, ip := range c.proxy.IPs {
		if a.ips[ip] {
			return true
		}
	}
	return false
}
