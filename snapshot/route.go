package snapshot

import (
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/librarymesh/controlplane/meshname"
)

// RouteMatchPrefix matches every path under prefix.
func RouteMatchPrefix(prefix string) *routev3.RouteMatch {
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}}
}

// RouteToCluster sends everything to one cluster, with Istio's default of no
// route timeout.
func RouteToCluster(name, cluster string) *routev3.Route {
	return &routev3.Route{
		Name:  name,
		Match: RouteMatchPrefix("/"),
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
			Timeout:          durationpb.New(0),
		}},
	}
}

// NonForwardingRoute is what a proxyless gRPC server's inbound route must be.
func NonForwardingRoute(name string) *routev3.Route {
	return &routev3.Route{
		Name:   name,
		Match:  RouteMatchPrefix("/"),
		Action: &routev3.Route_NonForwardingAction{NonForwardingAction: &routev3.NonForwardingAction{}},
	}
}

// VirtualHost answers for domains with routes.
func VirtualHost(name string, domains []string, routes ...*routev3.Route) *routev3.VirtualHost {
	return &routev3.VirtualHost{Name: name, Domains: domains, Routes: routes}
}

// AllowAnyVirtualHost sends unknown hosts to PassthroughCluster, as Istio's
// default outbound traffic policy ALLOW_ANY does.
func AllowAnyVirtualHost() *routev3.VirtualHost {
	return VirtualHost(meshname.AllowAnyVirtualHost, []string{"*"}, RouteToCluster(meshname.AllowAnyVirtualHost, meshname.PassthroughCluster))
}

// RouteConfiguration holds virtual hosts.
func RouteConfiguration(name string, vhosts ...*routev3.VirtualHost) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: name, VirtualHosts: vhosts}
}
