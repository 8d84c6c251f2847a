package snapshot

import (
	"net"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/librarymesh/controlplane/registry"
)

// SocketAddress is a TCP address.
func SocketAddress(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       ip,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// LbEndpoint is one weighted endpoint.
func LbEndpoint(ip string, port, weight uint32) *endpointv3.LbEndpoint {
	return &endpointv3.LbEndpoint{
		HostIdentifier:      &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: SocketAddress(ip, port)}},
		LoadBalancingWeight: wrapperspb.UInt32(max(weight, 1)),
	}
}

// Locality parses Istio's `region/zone/subzone`.
func Locality(s string) *corev3.Locality {
	parts := strings.SplitN(s, "/", 3)
	parts = append(parts, "", "", "")
	return &corev3.Locality{Region: parts[0], Zone: parts[1], SubZone: parts[2]}
}

// ClusterLoadAssignment groups a service port's ready endpoints by locality.
// Every locality and endpoint carries a weight: grpc-go drops localities
// without one. Endpoints that serve the port on the same address and port
// (two instances on one VM that differ only in another port) are one
// LbEndpoint, the first: grpc-go rejects duplicate addresses.
func ClusterLoadAssignment(name string, port registry.Port, eps []*registry.Endpoint) *endpointv3.ClusterLoadAssignment {
	return localityLoadAssignment(name, port, eps, nil, client{})
}

// localityLoadAssignment is ClusterLoadAssignment seen by client c under
// the locality rule r (nil for none): priorities and weights as Istio sets
// them (see locality.go).
func localityLoadAssignment(name string, port registry.Port, eps []*registry.Endpoint, r *localityRule, c client) *endpointv3.ClusterLoadAssignment {
	groups := groupEndpoints(servedEndpoints(port, eps), r, c)
	if r != nil && r.failover && len(r.setting.Distribute) == 0 {
		applyLocalityFailover(groups, r, c)
		renumber(groups)
	}
	return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: localityLbEndpoints(groups, port, r, c)}
}

// servedEndpoints are the ready endpoints, the first of each address and port.
func servedEndpoints(port registry.Port, eps []*registry.Endpoint) []*registry.Endpoint {
	out := make([]*registry.Endpoint, 0, len(eps))
	seen := map[string]bool{}
	for _, ep := range eps {
		addr := net.JoinHostPort(ep.Address, strconv.FormatUint(uint64(ep.PortFor(port)), 10))
		if !ep.Ready || seen[addr] {
			continue
		}
		seen[addr] = true
		out = append(out, ep)
	}
	return out
}

// LocalClusterLoadAssignment is one endpoint on 127.0.0.1, for inbound clusters.
func LocalClusterLoadAssignment(name string, port uint32) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{
		ClusterName: name,
		Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints:         []*endpointv3.LbEndpoint{LbEndpoint(localhostAddress, port, 1)},
			LoadBalancingWeight: wrapperspb.UInt32(1),
		}},
	}
}
