// Package snapshot turns the registry model and a proxy into xDS resources.
// It is pure: no I/O, no goroutines, no clocks. All Envoy knowledge lives here.
package snapshot

import (
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
)

// Options are the mesh-wide settings the translation needs. NewBuilder
// fills an empty field with its default (defaults.go).
type Options struct {
	TrustDomain   string // "cluster.local": SPIFFE IDs the model does not spell out
	RootNamespace string // "istio-system": a PeerAuthentication there is mesh-wide
	AccessLogPath string // "/var/log/istio/istio.log" for VM inbound listeners
	// TrustBundle is the ID of the mesh's trust bundle (certauthority's
	// BundleID). Clusters and filter chains that validate peers carry it in
	// their metadata, so a new bundle gives them a new version; empty omits it.
	TrustBundle string
}

// Resources is what one proxy receives, each list sorted by resource name.
// The protos are shared between proxies and must never be modified.
type Resources struct {
	Listeners []types.Resource // *listenerv3.Listener
	Routes    []types.Resource // *routev3.RouteConfiguration
	Clusters  []types.Resource // *clusterv3.Cluster
	Endpoints []types.Resource // *endpointv3.ClusterLoadAssignment
	Secrets   []types.Resource // *tlsv3.Secret
	// VirtualHosts are the virtual hosts of route configurations that
	// carry vhds (Envoy sidecars on a delta ADS stream), each named
	// ROUTECONFIG/VHOST as VHDS wants (meshname.VHDSVirtualHost).
	VirtualHosts []types.Resource // *routev3.VirtualHost
}
