package meshname

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
