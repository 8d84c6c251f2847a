package meshname

import "strings"

// Fixed route and virtual host names.
const (
	// AllowAnyVirtualHost is the catch-all virtual host (and its route) of a
	// sidecar's outbound route configurations, sending unknown hosts to
	// PassthroughCluster.
	AllowAnyVirtualHost = "allow_any"
	// DefaultRoute names the single route of a virtual host.
	DefaultRoute = "default"
)

// RouteConfig is the RDS name of a sidecar's outbound HTTP routes on a port.
func RouteConfig(port uint32) string { return portString(port) }

// InboundVirtualHost is `inbound|http|PORT`, the virtual host of an inbound
// HTTP port, for Envoy sidecars and proxyless gRPC servers alike.
func InboundVirtualHost(port uint32) string {
	return string(Inbound) + "|http|" + portString(port)
}

// VHDSVirtualHost is `ROUTECONFIG/VHOST`, the name of a virtual host sent
// over VHDS: Envoy's resource naming convention for VHDS
// (<route configuration name>/<host entry>). The virtual host carries it as
// its own name too, since Envoy removes virtual hosts by that name.
func VHDSVirtualHost(routeConfig, vhost string) string { return routeConfig + "/" + vhost }

// VHDSRouteConfig is the route configuration a VHDS virtual host name (or
// an on-demand alias) belongs to: what is left of the last slash, since a
// host entry cannot hold one while a route configuration name can. It
// reports false for a name without a slash.
func VHDSRouteConfig(name string) (string, bool) {
	i := strings.LastIndexByte(name, '/')
	if i < 0 {
		return "", false
	}
	return name[:i], true
}
