package snapshot

import (
	"time"

	"github.com/librarymesh/controlplane/registry"
)

// Istio-compatible defaults. Each is used where the model leaves a value unset.
const (
	DefaultTrustDomain   = "cluster.local"
	DefaultRootNamespace = "istio-system"
	DefaultAccessLogPath = "/var/log/istio/istio.log"

	// Ports of iptables-captured traffic.
	VirtualOutboundPort = 15001
	VirtualInboundPort  = 15006

	// Address loopback inbound clusters forward to.
	localhostAddress  = "127.0.0.1"
	wildcardAddress   = "0.0.0.0"
	wildcardAddressV6 = "::"

	// Envoy's transport protocol names (tls_inspector).
	transportProtocolTLS = "tls"
	transportProtocolRaw = "raw_buffer"
)

// Durations (Istio's defaults).
const (
	DefaultConnectTimeout = 10 * time.Second // MeshConfig connectTimeout
)

// DefaultMTLSMode applies when no PeerAuthentication says anything (Istio's default).
const DefaultMTLSMode = registry.MTLSPermissive

// istioMTLSALPN is what Istio sidecars advertise on mesh mTLS connections.
func istioMTLSALPN() []string { return []string{"istio-peer-exchange", "istio"} }

// IstioAccessLogFormat is Istio's default text access log format
// (MeshConfig accessLogFormat unset), which names upstream host and cluster.
const IstioAccessLogFormat = `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" ` +
	`%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% ` +
	`"%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% ` +
	`%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" ` +
	`"%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER% %UPSTREAM_LOCAL_ADDRESS% ` +
	`%DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%` + "\n"
