package meshname

// Names of the outbound catch-alls a Sidecar's outboundTrafficPolicy picks.
const (
	// BlockAllVirtualHost is the catch-all virtual host (and its route) of
	// a sidecar's outbound route configurations under REGISTRY_ONLY: it
	// answers 502, as Istio's does.
	BlockAllVirtualHost = "block_all"
	// VirtualOutboundCatchAllChain is the filter chain of virtualOutbound
	// that takes connections to addresses no service claims
	// (PassthroughCluster under ALLOW_ANY, BlackHoleCluster under REGISTRY_ONLY).
	VirtualOutboundCatchAllChain = "virtualOutbound-catchall-tcp"
)
