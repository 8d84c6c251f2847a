package snapshot

import (
	"maps"
	"net"
	"slices"
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
	byLocality := map[string]*endpointv3.LocalityLbEndpoints{}
	seen := map[string]bool{}
	for _, ep := range eps {
		addr := net.JoinHostPort(ep.Address, strconv.FormatUint(uint64(ep.PortFor(port)), 10))
		if !ep.Ready || seen[addr] {
			continue
		}
		seen[addr] = true
		l, ok := byLocality[ep.Locality]
		if !ok {
			l = &endpointv3.LocalityLbEndpoints{Locality: Locality(ep.Locality), LoadBalancingWeight: wrapperspb.UInt32(0)}
			byLocality[ep.Locality] = l
		}
		w := max(ep.Weight, 1)
		lb := LbEndpoint(ep.Address, ep.PortFor(port), w)
		lb.Metadata = tlsModeMetadata(ep.TLSMode)
		l.LbEndpoints = append(l.LbEndpoints, lb)
		l.LoadBalancingWeight.Value += w
	}
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	for _, key := range slices.Sorted(maps.Keys(byLocality)) {
		cla.Endpoints = append(cla.Endpoints, byLocality[key])
	}
	return cla
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
