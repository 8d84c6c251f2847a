package snapshot

import (
	"fmt"
	"net"
	"strconv"
)

// Every name Envoy, Istio tooling or operators read comes from one function here.

// OutboundClusterName is `outbound|PORT|SUBSET|HOST`.
func OutboundClusterName(port uint32, subset, host string) string {
	return fmt.Sprintf("outbound|%d|%s|%s", port, subset, host)
}

// InboundClusterName is `inbound|PORT|PORTNAME|HOST`, the form VM operators
// read in their access logs.
func InboundClusterName(port uint32, portName, host string) string {
	return fmt.Sprintf("inbound|%d|%s|%s", port, portName, host)
}

// InboundListenerName names a VM's inbound listener; it is the inbound cluster name.
func InboundListenerName(port uint32, portName, host string) string {
	return InboundClusterName(port, portName, host)
}

// SNI is the mesh mTLS server name `outbound_.PORT_.SUBSET_.HOST`.
func SNI(port uint32, subset, host string) string {
	return fmt.Sprintf("outbound_.%d_.%s_.%s", port, subset, host)
}

// SpiffeID is `spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT`.
func SpiffeID(trustDomain, namespace, serviceAccount string) string {
	return fmt.Sprintf("spiffe://%s/ns/%s/sa/%s", trustDomain, namespace, serviceAccount)
}

// OutboundListenerName is `VIP_PORT`, or `0.0.0.0_PORT` for a service without VIP.
func OutboundListenerName(vip string, port uint32) string {
	if vip == "" {
		vip = wildcardAddress
	}
	return vip + "_" + strconv.FormatUint(uint64(port), 10)
}

// RouteConfigName is the RDS name of a sidecar's outbound HTTP routes on a port.
func RouteConfigName(port uint32) string {
	return strconv.FormatUint(uint64(port), 10)
}

// GRPCClientListenerName is `HOST:PORT`, the name a proxyless gRPC client
// dialing `xds:///HOST:PORT` asks for. Its RouteConfiguration has the same name.
func GRPCClientListenerName(host string, port uint32) string {
	return net.JoinHostPort(host, strconv.FormatUint(uint64(port), 10))
}

// GRPCServerListenerName is the listener a grpc-go xDS server on IP:PORT asks for.
func GRPCServerListenerName(ip string, port uint32) string {
	return "grpc/server?xds.resource.listening_address=" + net.JoinHostPort(ip, strconv.FormatUint(uint64(port), 10))
}

// IstioGRPCServerListenerName is the same Listener under the name Istio's
// agent asks for: pilot-agent writes the gRPC bootstrap with
// server_listener_resource_name_template "xds.istio.io/grpc/lds/inbound/%s".
func IstioGRPCServerListenerName(ip string, port uint32) string {
	return "xds.istio.io/grpc/lds/inbound/" + net.JoinHostPort(ip, strconv.FormatUint(uint64(port), 10))
}

// InboundFilterChainName names a virtualInbound filter chain for a port.
func InboundFilterChainName(port uint32, tls bool) string {
	if tls {
		return fmt.Sprintf("inbound|%d|mtls", port)
	}
	return fmt.Sprintf("inbound|%d|plaintext", port)
}

// VirtualInboundCatchAllChainName names virtualInbound's chains for ports no service names.
func VirtualInboundCatchAllChainName(tls bool) string {
	if tls {
		return "virtualInbound-catchall-mtls"
	}
	return "virtualInbound-catchall-plaintext"
}

func portString(port uint32) string { return strconv.FormatUint(uint64(port), 10) }
