package snapshot

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/librarymesh/controlplane/registry"
)

// TestProxylessGRPCAcceptsTrafficPolicy feeds the clusters and routes a
// DestinationRule's traffic policy makes for proxyless gRPC to a real grpc-go
// xDS client: every variant must be accepted (an RPC over mesh mTLS
// succeeds), including the ones grpc-go has no equivalent for.
func TestProxylessGRPCAcceptsTrafficPolicy(t *testing.T) {
	three, fifty := uint32(3), uint32(50)
	idle := 30 * time.Second
	policies := map[string]*registry.TrafficPolicy{
		"least request, pool, outlier detection": {
			LoadBalancer:     &registry.LoadBalancer{Simple: registry.LBLeastRequest},
			ConnectionPool:   &registry.ConnectionPool{MaxConnections: 10, HTTP2MaxRequests: 100, ConnectTimeout: time.Second, IdleTimeout: &idle},
			OutlierDetection: &registry.OutlierDetection{Consecutive5xxErrors: &three, FailurePercentageThreshold: &fifty, Interval: time.Second, MaxEjectionPercent: 50},
		},
		"ring hash on a header":     {LoadBalancer: &registry.LoadBalancer{ConsistentHash: &registry.ConsistentHash{HeaderName: "x-user", MinimumRingSize: 64}}},
		"ring hash on a cookie":     {LoadBalancer: &registry.LoadBalancer{ConsistentHash: &registry.ConsistentHash{Cookie: &registry.HashCookie{Name: "u", TTL: time.Minute}}}},
		"maglev on the source IP":   {LoadBalancer: &registry.LoadBalancer{ConsistentHash: &registry.ConsistentHash{UseSourceIP: true, Maglev: true, MaglevTableSize: 65537}}},
		"random":                    {LoadBalancer: &registry.LoadBalancer{Simple: registry.LBRandom}},
		"passthrough":               {LoadBalancer: &registry.LoadBalancer{Simple: registry.LBPassthrough}},
		"query parameter hash, tls": {LoadBalancer: &registry.LoadBalancer{ConsistentHash: &registry.ConsistentHash{QueryParameter: "q"}}},
	}
	m := newEchoMesh(t)
	view := echoView(m.port, meshStrict(), echoMutual(nil))
	setProxySnapshot(t, m.cache, view, "0", echoServerID)
	m.startServer(t)
	version := 0
	for name, pol := range policies {
		t.Run(name, func(t *testing.T) {
			version++
			pol.TLS = &registry.ClientTLS{Mode: registry.ClientTLSIstioMutual}
			drs := []*registry.DestinationRule{{Namespace: "default", Name: "echo", Host: "echo.default.svc.cluster.local", TrafficPolicy: pol,
				Subsets: []registry.Subset{{Name: "all", TrafficPolicy: &registry.TrafficPolicy{LoadBalancer: pol.LoadBalancer}}}}}
			setProxySnapshot(t, m.cache, echoView(m.port, meshStrict(), drs), fmt.Sprint(version), echoClientID)
			ctx, cancel := context.WithTimeout(m.ctx, 10*time.Second)
			defer cancel()
			if err := m.call(ctx, t, true); err != nil {
				t.Fatalf("RPC with %s: %v (grpc-go refused the config?)", name, err)
			}
		})
	}
}
