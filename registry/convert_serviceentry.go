package registry

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	networkingapi "istio.io/api/networking/v1alpha3"
)

// serviceEntry converts a ServiceEntry: one service row per host, its inline
// endpoints (also workloads when they are IPs), and its workload selector.
func (c *converter) serviceEntry(key ObjectKey, se *networkingapi.ServiceEntry, p *problems) *record {
	res, ok := entryResolution(se.GetResolution())
	if !ok {
		p.add("spec.resolution", "UnknownResolution", "resolution %d is not known", se.GetResolution())
	}
	hosts, fields := entryHosts(se.GetHosts(), p)
	c.checkHostOwners(key, hosts, fields, p)
	exportTo := parseExportTo("spec.exportTo", se.GetExportTo(), key.Namespace, p)
	ports := entryPorts(se.GetPorts(), p)
	addrs := entryAddresses(se.GetAddresses(), p)
	selector := maps.Clone(se.GetWorkloadSelector().GetLabels())
	hasSelector := se.GetWorkloadSelector() != nil
	if hasSelector && len(se.GetEndpoints()) > 0 {
		p.add("spec.workloadSelector", "SelectorWithEndpoints", "only one of workloadSelector and endpoints may be set")
	}
	if res == ResolutionStatic && len(se.GetEndpoints()) == 0 && !hasSelector {
		p.add("spec.endpoints", "NoEndpoints", "resolution STATIC needs endpoints or a workloadSelector")
	}
	location := MeshExternal
	if se.GetLocation() == networkingapi.ServiceEntry_MESH_INTERNAL {
		location = MeshInternal
	}
	rec := &record{}
	selectorNS := ""
	if hasSelector {
		selectorNS = key.Namespace
	}
	for i, h := range hosts {
		rec.Services = append(rec.Services, &serviceRow{SelectorNamespace: selectorNS, HostField: fields[i], ExportTo: exportTo,
			Kind: KindServiceEntry, Namespace: key.Namespace, Name: key.Name, Hostname: h,
			Addresses: addrs, Ports: ports, Resolution: res, Location: location,
			SubjectAltNames: slices.Clone(se.GetSubjectAltNames()), Selector: selector, UseSelector: hasSelector,
		})
	}
	c.entryEndpoints(key, se, res, hosts, ports, rec, p)
	return rec
}

func entryResolution(r networkingapi.ServiceEntry_Resolution) (Resolution, bool) {
	switch r {
	case networkingapi.ServiceEntry_STATIC:
		return ResolutionStatic, true
	case networkingapi.ServiceEntry_DNS, networkingapi.ServiceEntry_DNS_ROUND_ROBIN, networkingapi.ServiceEntry_DYNAMIC_DNS:
		return ResolutionDNS, true
	case networkingapi.ServiceEntry_NONE:
		return ResolutionNone, true
	}
	return ResolutionNone, false
}

// entryHosts returns the unique hosts, lower case, and the field each was
// first named in.
func entryHosts(in []string, p *problems) (hosts, fields []string) {
	if len(in) == 0 {
		p.add("spec.hosts", "MissingHosts", "at least one host is required")
	}
	for i, h := range in {
		h = strings.ToLower(strings.TrimSpace(h))
		field := fmt.Sprintf("spec.hosts[%d]", i)
		if h == "" || strings.ContainsAny(h, " /:") {
			p.add(field, "InvalidHost", "%q is not a host name", in[i])
			continue
		}
		if !slices.Contains(hosts, h) {
			hosts, fields = append(hosts, h), append(fields, field)
		}
	}
	return hosts, fields
}

// checkHostOwners refuses hosts of Kubernetes Services of another
// namespace: NAME.NS.svc.DOMAIN (and any name under NS.svc.DOMAIN)
// belongs to namespace NS, as in Istio, so a ServiceEntry elsewhere cannot
// add endpoints or subjectAltNames to it.
func (c *converter) checkHostOwners(key ObjectKey, hosts, fields []string, p *problems) {
	for i, h := range hosts {
		ns, name, ok := c.kubeHostOwner(h)
		if !ok || ns == key.Namespace {
			continue
		}
		p.add(fields[i], ReasonHostNotOwned,
			"host %q belongs to namespace %s (the host of Service %s/%s); %s in namespace %s may not add endpoints or subjectAltNames to it: refused",
			h, ns, ns, name, key, key.Namespace)
	}
}

// kubeHostOwner returns the namespace (and the Service name, or "*") that
// owns a host under NS.svc.DOMAIN.
func (c *converter) kubeHostOwner(host string) (namespace, name string, ok bool) {
	rest, ok := strings.CutSuffix(host, ".svc."+c.domainSuffix)
	if !ok {
		return "", "", false
	}
	i := strings.LastIndexByte(rest, '.')
	if i <= 0 || i == len(rest)-1 {
		return "", "", false
	}
	name = rest[:i]
	if j := strings.LastIndexByte(name, '.'); j >= 0 {
		name = name[j+1:]
	}
	return rest[i+1:], name, true
}

// parseExportTo resolves an exportTo list as Istio reads it: "." is the
// object's own namespace, "*" every namespace, "~" none, else namespace
// names. Empty means every namespace. The result is sorted and unique.
func parseExportTo(field string, in []string, ns string, p *problems) []string {
	var out []string
	for i, e := range in {
		e = strings.TrimSpace(e)
		switch {
		case e == ".":
			e = ns
		case e == "*" || e == "~":
		case !isDNSLabel(e):
			p.add(fmt.Sprintf("%s[%d]", field, i), "InvalidExportTo", "%q is not \".\", \"*\", \"~\" or a namespace name", in[i])
			continue
		}
		out = append(out, e)
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if slices.Contains(out, "~") && len(out) > 1 {
		p.add(field, "InvalidExportTo", "\"~\" (exported nowhere) cannot be combined with other values")
	}
	return out
}

// isDNSLabel reports whether s is a Kubernetes namespace name (RFC 1123 label).
func isDNSLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' {
			return false
		}
	}
	return true
}

func entryPorts(in []*networkingapi.ServicePort, p *problems) []Port {
	var out []Port
	numbers, names := map[uint32]int{}, map[string]int{}
	for i, sp := range in {
		field := fmt.Sprintf("spec.ports[%d]", i)
		switch n := sp.GetNumber(); {
		case n == 0 || n > 65535:
			p.add(field+".number", "InvalidPort", "port %d is not in 1-65535", n)
			continue
		case sp.GetName() == "":
			p.add(field+".name", "MissingPortName", "port %d needs a name", n)
			continue
		}
		if j, dup := numbers[sp.GetNumber()]; dup {
			p.add(field+".number", "PortClash", "port %d is already defined by spec.ports[%d]", sp.GetNumber(), j)
			continue
		}
		if j, dup := names[sp.GetName()]; dup {
			p.add(field+".name", "PortClash", "port name %q is already used by spec.ports[%d]", sp.GetName(), j)
			continue
		}
		if t := sp.GetTargetPort(); t > 65535 {
			p.add(field+".targetPort", "InvalidPort", "target port %d is not in 1-65535", t)
			continue
		}
		numbers[sp.GetNumber()], names[sp.GetName()] = i, i
		out = append(out, Port{
			Name: sp.GetName(), Number: sp.GetNumber(), TargetPort: sp.GetTargetPort(),
			Protocol: entryPortProtocol(sp.GetProtocol(), sp.GetName()),
		})
	}
	slices.SortFunc(out, comparePorts)
	return out
}

// entryAddresses accepts IPs and CIDR ranges, as Istio does.
func entryAddresses(in []string, p *problems) []string {
	var out []string
	for i, a := range in {
		if ip, err := netip.ParseAddr(a); err == nil {
			out = append(out, ip.String())
			continue
		}
		if pfx, err := netip.ParsePrefix(a); err == nil {
			out = append(out, pfx.String())
			continue
		}
		p.add(fmt.Sprintf("spec.addresses[%d]", i), "InvalidAddress", "%q is not an IP address or CIDR range", a)
	}
	return out
}

// entryEndpoints adds the inline endpoints, one per host, and for IP
// endpoints a workload (a VM) that WorkloadByIP finds.
func (c *converter) entryEndpoints(key ObjectKey, se *networkingapi.ServiceEntry, res Resolution, hosts []string, ports []Port, rec *record, p *problems) {
	eps := se.GetEndpoints()
	if res == ResolutionDNS && len(eps) == 0 && se.GetWorkloadSelector() == nil {
		for _, h := range hosts { // DNS without endpoints resolves each host itself
			rec.Endpoints = append(rec.Endpoints, &endpointRow{Hostname: h, Address: h,
				Endpoint: &Endpoint{Hostname: h, Namespace: key.Namespace, Address: h, Ready: true}})
		}
		return
	}
	for i, we := range eps {
		field := fmt.Sprintf("spec.endpoints[%d]", i)
		addr, ok := checkWorkloadAddress(field, we.GetAddress(), res == ResolutionStatic, p)
		if !ok || !checkEndpointPorts(field, we.GetPorts(), ports, p) {
			continue
		}
		w := workloadFromEntry(KindServiceEntry, key, addr, we)
		w.TLSMode = workloadTLSMode(field+".labels", we.GetLabels(), nil, p)
		for _, h := range hosts {
			ep := endpointFromWorkload(h, w, we.GetWeight(), true)
			rec.Endpoints = append(rec.Endpoints, &endpointRow{Hostname: h, Address: addr, Endpoint: ep})
		}
		if _, err := netip.ParseAddr(addr); err == nil {
			rec.Workloads = append(rec.Workloads, &workloadRow{Field: field + ".address",
				Namespace: key.Namespace, Addresses: []string{addr}, Ready: true, Weight: we.GetWeight(), Workload: w})
		}
	}
}

// checkWorkloadAddress checks an endpoint address: an IP when mustBeIP, else
// an IP or a host name.
func checkWorkloadAddress(field, addr string, mustBeIP bool, p *problems) (string, bool) {
	if ip, err := netip.ParseAddr(addr); err == nil {
		return ip.String(), true
	}
	switch {
	case addr == "":
		p.add(field+".address", "MissingAddress", "address is required")
	case mustBeIP:
		p.add(field+".address", "InvalidAddress", "%q is not an IP address (resolution STATIC)", addr)
	case strings.ContainsAny(addr, " /:"):
		p.add(field+".address", "InvalidAddress", "%q is not an IP address or host name", addr)
	default:
		return strings.ToLower(addr), true
	}
	return "", false
}

func checkEndpointPorts(field string, eps map[string]uint32, ports []Port, p *problems) bool {
	ok := true
	for _, name := range slices.Sorted(maps.Keys(eps)) {
		if n := eps[name]; n == 0 || n > 65535 {
			p.add(fmt.Sprintf("%s.ports[%s]", field, name), "InvalidPort", "port %d is not in 1-65535", n)
			ok = false
		}
		if !slices.ContainsFunc(ports, func(sp Port) bool { return sp.Name == name }) {
			p.add(fmt.Sprintf("%s.ports[%s]", field, name), "UnknownPortName", "no service port is named %q", name)
			ok = false
		}
	}
	return ok
}

func workloadFromEntry(kind string, key ObjectKey, addr string, we *networkingapi.WorkloadEntry) *Workload {
	return &Workload{
		Kind: kind, Namespace: key.Namespace, Name: key.Name, Address: addr,
		Labels: maps.Clone(we.GetLabels()), ServiceAccount: we.GetServiceAccount(),
		Locality: we.GetLocality(), Network: we.GetNetwork(), Ports: maps.Clone(we.GetPorts()),
	}
}

// endpointFromWorkload makes the endpoint of service host served by workload w.
func endpointFromWorkload(host string, w *Workload, weight uint32, ready bool) *Endpoint {
	return &Endpoint{
		Hostname: host, Namespace: w.Namespace, Address: w.Address, Ports: w.Ports,
		Labels: w.Labels, ServiceAccount: w.ServiceAccount, Locality: w.Locality,
		Network: w.Network, Weight: weight, Ready: ready, Workload: w.Kind + " " + w.Namespace + "/" + w.Name,
		TLSMode: w.TLSMode, Unhealthy: w.Unhealthy,
	}
}
