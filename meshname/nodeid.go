package meshname

import (
	"fmt"
	"net/netip"
	"strings"
)

// ProxyType is the first part of an Istio node ID.
type ProxyType string

// Proxy types Istio uses.
const (
	Sidecar ProxyType = "sidecar"
	Router  ProxyType = "router"
)

// DefaultDNSSuffix is the cluster DNS suffix of a node ID's DNS domain.
const DefaultDNSSuffix = "svc.cluster.local"

// NodeID is a parsed Istio node ID `TYPE~IP~NAME.NAMESPACE~DNS_DOMAIN`.
type NodeID struct {
	Type      ProxyType
	IP        netip.Addr
	Name      string // pod or workload name
	Namespace string
	DNSDomain string // e.g. default.svc.cluster.local
}

// String makes the node ID.
func (n NodeID) String() string {
	return string(n.Type) + "~" + n.IP.String() + "~" + n.Name + "." + n.Namespace + "~" + n.DNSDomain
}

// SidecarNodeID is `sidecar~IP~NAME.NAMESPACE~NAMESPACE.DNS_SUFFIX`; an empty
// dnsSuffix means DefaultDNSSuffix. ip is written as given.
func SidecarNodeID(ip, name, namespace, dnsSuffix string) string {
	if dnsSuffix == "" {
		dnsSuffix = DefaultDNSSuffix
	}
	return string(Sidecar) + "~" + ip + "~" + name + "." + namespace + "~" + namespace + "." + dnsSuffix
}

// ParseNodeID reads `TYPE~IP~NAME.NAMESPACE~DNS_DOMAIN`. The error names the
// part that is wrong. The IP comes back in its canonical form.
func ParseNodeID(id string) (NodeID, error) {
	if id == "" {
		return NodeID{}, fmt.Errorf("node id is empty; want TYPE~IP~NAME.NAMESPACE~NAMESPACE.svc.cluster.local")
	}
	parts := strings.Split(id, "~")
	if len(parts) != 4 {
		return NodeID{}, fmt.Errorf("node id %q has %d parts separated by '~', want 4 (TYPE~IP~NAME.NAMESPACE~DNS_DOMAIN)", id, len(parts))
	}
	n := NodeID{Type: ProxyType(parts[0]), DNSDomain: parts[3]}
	switch n.Type {
	case Sidecar, Router:
	default:
		return NodeID{}, fmt.Errorf("node id %q: type %q is not sidecar or router", id, parts[0])
	}
	ip, err := netip.ParseAddr(parts[1])
	if err != nil {
		return NodeID{}, fmt.Errorf("node id %q: IP %q is not an IP address", id, parts[1])
	}
	n.IP = ip
	name, ns, ok := strings.Cut(parts[2], ".")
	if !ok || name == "" || ns == "" {
		return NodeID{}, fmt.Errorf("node id %q: %q is not NAME.NAMESPACE", id, parts[2])
	}
	n.Name, n.Namespace = name, ns
	return n, nil
}

// IstioProxyID is the short name Istio gives a proxy, NAME.NAMESPACE (the
// node ID's second part), which istioctl lists and takes as POD.NAMESPACE.
func IstioProxyID(name, namespace string) string { return name + "." + namespace }
