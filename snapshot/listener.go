package snapshot

import (
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	origdstv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/librarymesh/controlplane/meshname"
)

// Envoy's well-known filter names.
const (
	hcmFilterName         = "envoy.filters.network.http_connection_manager"
	tcpProxyFilterName    = "envoy.filters.network.tcp_proxy"
	routerFilterName      = "envoy.filters.http.router"
	tlsInspectorName      = "envoy.filters.listener.tls_inspector"
	originalDstFilterName = "envoy.filters.listener.original_dst"
	fileAccessLogName     = "envoy.access_loggers.file"
)

// FileAccessLog writes Istio's text format to path.
func FileAccessLog(path string) *accesslogv3.AccessLog {
	return &accesslogv3.AccessLog{
		Name: fileAccessLogName,
		ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: mustAny(&filev3.FileAccessLog{
			Path: path,
			AccessLogFormat: &filev3.FileAccessLog_LogFormat{LogFormat: &corev3.SubstitutionFormatString{
				Format: &corev3.SubstitutionFormatString_TextFormatSource{TextFormatSource: &corev3.DataSource{
					Specifier: &corev3.DataSource_InlineString{InlineString: IstioAccessLogFormat},
				}},
			}},
		})},
	}
}

// TCPProxyFilter forwards connections to a cluster.
func TCPProxyFilter(statPrefix, cluster string, logs ...*accesslogv3.AccessLog) *listenerv3.Filter {
	return &listenerv3.Filter{
		Name: tcpProxyFilterName,
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(&tcpproxyv3.TcpProxy{
			StatPrefix:       statPrefix,
			ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster},
			AccessLog:        logs,
		})},
	}
}

// hcmOptions says where an HTTP connection manager gets its routes.
type hcmOptions struct {
	RDS    string                      // route config name over ADS, or
	Inline *routev3.RouteConfiguration // an inline route config
	Logs   []*accesslogv3.AccessLog
	// Filters run before the router (authorization).
	Filters []*hcmv3.HttpFilter
}

// HTTPConnectionManager is an HCM with the router filter.
func HTTPConnectionManager(statPrefix string, o hcmOptions) *hcmv3.HttpConnectionManager {
	h := &hcmv3.HttpConnectionManager{
		StatPrefix:  statPrefix,
		CodecType:   hcmv3.HttpConnectionManager_AUTO,
		AccessLog:   o.Logs,
		HttpFilters: append(append([]*hcmv3.HttpFilter(nil), o.Filters...), RouterFilter()),
	}
	if o.Inline != nil {
		h.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: o.Inline}
	} else {
		h.RouteSpecifier = &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource: adsConfigSource(), RouteConfigName: o.RDS,
		}}
	}
	return h
}

// RouterFilter is the terminal HTTP filter.
func RouterFilter() *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{
		Name:       routerFilterName,
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})},
	}
}

// HCMFilter wraps an HCM as a network filter.
func HCMFilter(h *hcmv3.HttpConnectionManager) *listenerv3.Filter {
	return &listenerv3.Filter{Name: hcmFilterName, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(h)}}
}

// TLSInspector detects TLS so filter chains can match on transport_protocol.
func TLSInspector() *listenerv3.ListenerFilter {
	return &listenerv3.ListenerFilter{
		Name:       tlsInspectorName,
		ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(&tlsinspectorv3.TlsInspector{})},
	}
}

// OriginalDst restores the pre-iptables destination.
func OriginalDst() *listenerv3.ListenerFilter {
	return &listenerv3.ListenerFilter{
		Name:       originalDstFilterName,
		ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(&origdstv3.OriginalDst{})},
	}
}

// FilterChain is one chain of network filters, optionally with TLS.
func FilterChain(name string, match *listenerv3.FilterChainMatch, tls *corev3.TransportSocket, filters ...*listenerv3.Filter) *listenerv3.FilterChain {
	return &listenerv3.FilterChain{Name: name, FilterChainMatch: match, TransportSocket: tls, Filters: filters}
}

// OutboundListener is a sidecar's per-service-port listener behind iptables
// (bind_to_port false: virtualOutbound hands it the connections).
func OutboundListener(name, ip string, port uint32, chain *listenerv3.FilterChain) *listenerv3.Listener {
	return &listenerv3.Listener{
		Name:             name,
		Address:          SocketAddress(ip, port),
		TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		BindToPort:       wrapperspb.Bool(false),
		FilterChains:     []*listenerv3.FilterChain{chain},
	}
}

// VirtualOutboundListener catches all captured outbound traffic on 15001 and
// hands it to the listener for its original destination, else passthrough.
func VirtualOutboundListener() *listenerv3.Listener {
	return &listenerv3.Listener{
		Name:             meshname.VirtualOutboundListener,
		Address:          SocketAddress(wildcardAddress, VirtualOutboundPort),
		TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		UseOriginalDst:   wrapperspb.Bool(true),
		FilterChains: []*listenerv3.FilterChain{FilterChain(meshname.VirtualOutboundCatchAllChain, nil, nil,
			TCPProxyFilter(meshname.PassthroughCluster, meshname.PassthroughCluster))},
	}
}

// APIListener is a proxyless gRPC client's listener: an HCM and nothing else.
func APIListener(name string, h *hcmv3.HttpConnectionManager) *listenerv3.Listener {
	return &listenerv3.Listener{
		Name:        name,
		ApiListener: &listenerv3.ApiListener{ApiListener: mustAny(h)},
	}
}
