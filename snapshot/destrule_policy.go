package snapshot

import (
	"math"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/librarymesh/controlplane/registry"
)

// clusterPolicy is the traffic policy of one cluster, merged as Istio
// does: the rule's policy, with the port's portLevelSettings replacing all
// of its parts; then each part the subset's policy sets; then the subset's
// own portLevelSettings for the port, again replacing all parts. The
// result has no PortLevel.
func clusterPolicy(dr *registry.DestinationRule, subset *registry.Subset, port uint32) registry.TrafficPolicy {
	var out registry.TrafficPolicy
	if dr != nil {
		out = forPort(dr.TrafficPolicy, port)
	}
	if subset == nil || subset.TrafficPolicy == nil {
		return out
	}
	sp := subset.TrafficPolicy
	if sp.LoadBalancer != nil {
		out.LoadBalancer = sp.LoadBalancer
	}
	if sp.ConnectionPool != nil {
		out.ConnectionPool = sp.ConnectionPool
	}
	if sp.OutlierDetection != nil {
		out.OutlierDetection = sp.OutlierDetection
	}
	if sp.TLS != nil {
		out.TLS = sp.TLS
	}
	if pl, ok := sp.PortLevel[port]; ok {
		out = *pl
	}
	out.PortLevel = nil
	return out
}

// forPort is tp for one port: its portLevelSettings entry when it has one.
func forPort(tp *registry.TrafficPolicy, port uint32) registry.TrafficPolicy {
	if tp == nil {
		return registry.TrafficPolicy{}
	}
	if pl, ok := tp.PortLevel[port]; ok {
		return *pl
	}
	out := *tp
	out.PortLevel = nil
	return out
}

// passthrough reports whether the policy sends to the original destination.
func passthrough(pol registry.TrafficPolicy) bool {
	return pol.LoadBalancer != nil && pol.LoadBalancer.ConsistentHash == nil && pol.LoadBalancer.Simple == registry.LBPassthrough
}

// applyTrafficPolicy sets a cluster's load balancer, connection pool and
// outlier detection from the policy (TLS is in its transport socket).
func applyTrafficPolicy(c *clusterv3.Cluster, pol registry.TrafficPolicy, port registry.Port, f clusterFlavor) {
	if c.GetType() != clusterv3.Cluster_ORIGINAL_DST {
		applyLoadBalancer(c, pol.LoadBalancer, f)
	}
	if cp := pol.ConnectionPool; cp != nil {
		c.CircuitBreakers = circuitBreakers(cp)
		if cp.ConnectTimeout > 0 {
			c.ConnectTimeout = durationpb.New(cp.ConnectTimeout)
		}
		if k := cp.TCPKeepalive; k != nil {
			c.UpstreamConnectionOptions = &clusterv3.UpstreamConnectionOptions{TcpKeepalive: tcpKeepalive(k)}
		}
		if f == envoyClusters && port.Protocol.IsHTTP() && (cp.IdleTimeout != nil || cp.MaxRequestsPerConnection > 0) {
			c.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpProtocolOptionsKey: mustAny(httpOptions(cp, port.Protocol.IsHTTP2()))}
		}
	}
	if od := pol.OutlierDetection; od != nil {
		c.OutlierDetection = outlierDetection(od)
		c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{HealthyPanicThreshold: &typev3.Percent{Value: float64(od.MinHealthPercent)}}
	}
}

// applyLoadBalancer sets the LB policy. grpc-go knows ROUND_ROBIN,
// LEAST_REQUEST and RING_HASH only: proxyless clients get RING_HASH for
// Maglev and ROUND_ROBIN for RANDOM.
func applyLoadBalancer(c *clusterv3.Cluster, lb *registry.LoadBalancer, f clusterFlavor) {
	switch {
	case lb == nil:
	case lb.ConsistentHash != nil && lb.ConsistentHash.Maglev && f == envoyClusters:
		c.LbPolicy = clusterv3.Cluster_MAGLEV
		if n := lb.ConsistentHash.MaglevTableSize; n > 0 {
			c.LbConfig = &clusterv3.Cluster_MaglevLbConfig_{MaglevLbConfig: &clusterv3.Cluster_MaglevLbConfig{TableSize: wrapperspb.UInt64(n)}}
		}
	case lb.ConsistentHash != nil:
		c.LbPolicy = clusterv3.Cluster_RING_HASH
		if n := lb.ConsistentHash.MinimumRingSize; n > 0 {
			c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{MinimumRingSize: wrapperspb.UInt64(n)}}
		}
	case lb.Simple == registry.LBLeastRequest:
		c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
	case lb.Simple == registry.LBRandom && f == envoyClusters:
		c.LbPolicy = clusterv3.Cluster_RANDOM
	}
}

// circuitBreakers are the connection pool's limits; an unset limit is
// Istio's default, unlimited (math.MaxUint32), not Envoy's 1024.
func circuitBreakers(cp *registry.ConnectionPool) *clusterv3.CircuitBreakers {
	limit := func(v uint32) *wrapperspb.UInt32Value {
		if v == 0 {
			v = math.MaxUint32
		}
		return wrapperspb.UInt32(v)
	}
	return &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
		MaxConnections:     limit(cp.MaxConnections),
		MaxPendingRequests: limit(cp.HTTP1MaxPendingRequests),
		MaxRequests:        limit(cp.HTTP2MaxRequests),
		MaxRetries:         limit(cp.MaxRetries),
		TrackRemaining:     true,
	}}}
}

func tcpKeepalive(k *registry.TCPKeepalive) *corev3.TcpKeepalive {
	out := &corev3.TcpKeepalive{}
	if k.Probes > 0 {
		out.KeepaliveProbes = wrapperspb.UInt32(k.Probes)
	}
	seconds := func(d time.Duration) *wrapperspb.UInt32Value {
		return wrapperspb.UInt32(uint32(min(d/time.Second, math.MaxUint32)))
	}
	if k.Time > 0 {
		out.KeepaliveTime = seconds(k.Time)
	}
	if k.Interval > 0 {
		out.KeepaliveInterval = seconds(k.Interval)
	}
	return out
}

// httpOptions are the upstream HTTP options with the pool's idle timeout
// and requests per connection.
func httpOptions(cp *registry.ConnectionPool, http2 bool) *httpv3.HttpProtocolOptions {
	out := &httpv3.HttpProtocolOptions{CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{}}
	if cp.IdleTimeout != nil {
		out.CommonHttpProtocolOptions.IdleTimeout = durationpb.New(*cp.IdleTimeout)
	}
	if cp.MaxRequestsPerConnection > 0 {
		out.CommonHttpProtocolOptions.MaxRequestsPerConnection = wrapperspb.UInt32(cp.MaxRequestsPerConnection)
	}
	explicit := &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
		ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}},
	}
	if http2 {
		explicit.ProtocolConfig = &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}}
	}
	out.UpstreamProtocolOptions = &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: explicit}
	return out
}

// outlierDetection turns on the ejections the rule sets (each enforced
// fully when its threshold is above 0) and never success-rate ejection, as
// Istio does. A failure percentage ejection considers hosts in clusters of
// any size (Envoy's default needs 5).
func outlierDetection(od *registry.OutlierDetection) *clusterv3.OutlierDetection {
	out := &clusterv3.OutlierDetection{EnforcingSuccessRate: wrapperspb.UInt32(0)}
	enforce := func(v *uint32) (*wrapperspb.UInt32Value, *wrapperspb.UInt32Value) {
		if v == nil {
			return nil, nil
		}
		return wrapperspb.UInt32(*v), wrapperspb.UInt32(min(*v, 1) * 100)
	}
	out.Consecutive_5Xx, out.EnforcingConsecutive_5Xx = enforce(od.Consecutive5xxErrors)
	out.ConsecutiveGatewayFailure, out.EnforcingConsecutiveGatewayFailure = enforce(od.ConsecutiveGatewayErrors)
	if od.SplitExternalLocalOriginErrors {
		out.SplitExternalLocalOriginErrors = true
		out.ConsecutiveLocalOriginFailure, out.EnforcingConsecutiveLocalOriginFailure = enforce(od.ConsecutiveLocalOriginFailures)
		out.EnforcingLocalOriginSuccessRate = wrapperspb.UInt32(0)
	}
	if v := od.FailurePercentageThreshold; v != nil {
		out.FailurePercentageThreshold, out.EnforcingFailurePercentage = wrapperspb.UInt32(*v), wrapperspb.UInt32(100)
		out.FailurePercentageMinimumHosts = wrapperspb.UInt32(1)
	}
	if od.Interval > 0 {
		out.Interval = durationpb.New(od.Interval)
	}
	if od.BaseEjectionTime > 0 {
		out.BaseEjectionTime = durationpb.New(od.BaseEjectionTime)
	}
	if od.MaxEjectionPercent > 0 {
		out.MaxEjectionPercent = wrapperspb.UInt32(od.MaxEjectionPercent)
	}
	return out
}

// HashPolicies are the route hash policies a DestinationRule's
// consistentHash needs on every route to the cluster (nil for none).
func HashPolicies(lb *registry.LoadBalancer) []*routev3.RouteAction_HashPolicy {
	if lb == nil || lb.ConsistentHash == nil {
		return nil
	}
	ch := lb.ConsistentHash
	var p *routev3.RouteAction_HashPolicy
	switch {
	case ch.HeaderName != "":
		p = &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
			Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: ch.HeaderName}}}
	case ch.Cookie != nil:
		c := &routev3.RouteAction_HashPolicy_Cookie{Name: ch.Cookie.Name, Path: ch.Cookie.Path}
		if ch.Cookie.TTL > 0 {
			c.Ttl = durationpb.New(ch.Cookie.TTL)
		}
		p = &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{Cookie: c}}
	case ch.UseSourceIP:
		p = &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{
			ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true}}}
	case ch.QueryParameter != "":
		p = &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_QueryParameter_{
			QueryParameter: &routev3.RouteAction_HashPolicy_QueryParameter{Name: ch.QueryParameter}}}
	default:
		return nil
	}
	return []*routev3.RouteAction_HashPolicy{p}
}

// hashPoliciesLocked are the route hash policies for traffic from proxies
// in ns to a service port's cluster (subset "" for the whole service).
func (b *Builder) hashPoliciesLocked(ns string, svc *registry.Service, port uint32, subset string) []*routev3.RouteAction_HashPolicy {
	dr := b.destinationRuleLocked(ns, svc)
	var s *registry.Subset
	if dr != nil && subset != "" {
		for i := range dr.Subsets {
			if dr.Subsets[i].Name == subset {
				s = &dr.Subsets[i]
			}
		}
	}
	return HashPolicies(clusterPolicy(dr, s, port).LoadBalancer)
}

// withHashPolicy sets the hash policies on a route that forwards.
func withHashPolicy(r *routev3.Route, hp []*routev3.RouteAction_HashPolicy) *routev3.Route {
	if a := r.GetRoute(); a != nil && len(hp) > 0 {
		a.HashPolicy = hp
	}
	return r
}

// TCPHashPolicies are the tcp_proxy hash policies a DestinationRule's
// consistentHash needs on a TCP port: Envoy hashes TCP connections on the
// source IP only, so other hash keys hash nothing (as in Istio).
func TCPHashPolicies(lb *registry.LoadBalancer) []*typev3.HashPolicy {
	if lb == nil || lb.ConsistentHash == nil || !lb.ConsistentHash.UseSourceIP {
		return nil
	}
	return []*typev3.HashPolicy{{PolicySpecifier: &typev3.HashPolicy_SourceIp_{SourceIp: &typev3.HashPolicy_SourceIp{}}}}
}

// tcpHashPoliciesLocked are the tcp_proxy hash policies for traffic from
// proxies in ns to a service port (the whole service).
func (b *Builder) tcpHashPoliciesLocked(ns string, svc *registry.Service, port uint32) []*typev3.HashPolicy {
	dr := b.destinationRuleLocked(ns, svc)
	return TCPHashPolicies(clusterPolicy(dr, nil, port).LoadBalancer)
}

// HashedTCPProxyFilter is TCPProxyFilter with hash policies (none: the same).
func HashedTCPProxyFilter(statPrefix, cluster string, hp []*typev3.HashPolicy) *listenerv3.Filter {
	if len(hp) == 0 {
		return TCPProxyFilter(statPrefix, cluster)
	}
	return &listenerv3.Filter{
		Name: tcpProxyFilterName,
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(&tcpproxyv3.TcpProxy{
			StatPrefix:       statPrefix,
			ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster},
			HashPolicy:       hp,
		})},
	}
}
