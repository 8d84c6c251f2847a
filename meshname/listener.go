package meshname

import (
	"net"
	"strconv"
)

// Fixed listener names Istio uses for iptables-captured traffic.
const (
	VirtualOutboundListener = "virtualOutbound"
	VirtualInboundListener  = "virtualInbound"
)

const wildcardAddress = "0.0.0.0"

// OutboundListener is `VIP_PORT`, or `0.0.0.0_PORT` for a service without VIP.
func OutboundListener(vip string, port uint32) string {
	if vip == "" {
		vip = wildcardAddress
	}
	return vip + "_" + portString(port)
}

// InboundListener names a VM's inbound listener; it is the InboundCluster name.
func InboundListener(port uint32, portName, host string) string {
	return InboundCluster(port, portName, host)
}

// GRPCClientListener is `HOST:PORT`, the name a proxyless gRPC client
// dialing `xds:///HOST:PORT` asks for. Its RouteConfiguration and virtual
// host have the same name.
func GRPCClientListener(host string, port uint32) string {
	return net.JoinHostPort(host, portString(port))
}

// GRPCServerListener is the listener a grpc-go xDS server on IP:PORT asks for.
func GRPCServerListener(ip string, port uint32) string {
	return "grpc/server?xds.resource.listening_address=" + net.JoinHostPort(ip, portString(port))
}

// IstioGRPCServerListener is the same Listener under the name Istio's
// agent asks for: pilot-agent writes the gRPC bootstrap with
// server_listener_resource_name_template "xds.istio.io/grpc/lds/inbound/%s".
func IstioGRPCServerListener(ip string, port uint32) string {
	return "xds.istio.io/grpc/lds/inbound/" + net.JoinHostPort(ip, portString(port))
}

// InboundFilterChain names a virtualInbound filter chain for a port:
// `inbound|PORT|mtls` or `inbound|PORT|plaintext`.
func InboundFilterChain(port uint32, tls bool) string {
	if tls {
		return string(Inbound) + "|" + portString(port) + "|mtls"
	}
	return string(Inbound) + "|" + portString(port) + "|plaintext"
}

// VirtualInboundCatchAllChain names virtualInbound's chains for ports no service names.
func VirtualInboundCatchAllChain(tls bool) string {
	if tls {
		return "virtualInbound-catchall-mtls"
	}
	return "virtualInbound-catchall-plaintext"
}

func portString(port uint32) string { return strconv.FormatUint(uint64(port), 10) }
