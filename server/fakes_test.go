package server

import (
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/librarymesh/controlplane/registry"
	"github.com/librarymesh/controlplane/snapshot"
)

// world is the whole fake model: one service whose cluster and endpoint
// the tests change.
type world struct {
	host           string // "svc.test"
	port           uint32
	backend        string // "127.0.0.1:PORT"
	connectTimeout time.Duration
	maglev         bool // an lb_policy grpc-go rejects
	noRoute        bool // leave out the route configuration the listener names
}

// fakeView is a registry.View of a world at a revision.
type fakeView struct {
	registry.View // unused methods panic
	rev           uint64
	w             world
}

func (v *fakeView) Revision() uint64                                    { return v.rev }
func (v *fakeView) Services() []*registry.Service                       { return nil }
func (v *fakeView) Endpoints(string) []*registry.Endpoint               { return nil }
func (v *fakeView) PeerAuthentications() []*registry.PeerAuthentication { return nil }
func (v *fakeView) DestinationRules() []*registry.DestinationRule       { return nil }

func (v *fakeView) AuthorizationPolicies() []*registry.AuthorizationPolicy { return nil }
func (v *fakeView) WorkloadByIP(string) *registry.Workload                 { return nil }
func (v *fakeView) VirtualServices() []*registry.VirtualService            { return nil }
func (v *fakeView) Gateways() []*registry.Gateway                          { return nil }
func (v *fakeView) Credential(string, string) *registry.Credential         { return nil }
func (v *fakeView) WorkloadGroups() []*registry.WorkloadGroup              { return nil }
func (v *fakeView) WorkloadGroup(string, string) *registry.WorkloadGroup   { return nil }

// fakeRegistry is a Registry whose world tests set.
type fakeRegistry struct {
	mu       sync.Mutex
	view     *fakeView
	changes  []registry.Change
	subs     []chan struct{}
	problems []registry.Problem
}

func newFakeRegistry(w world) *fakeRegistry {
	return &fakeRegistry{view: &fakeView{rev: 1, w: w}}
}

func (r *fakeRegistry) View() registry.View {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.view
}

func (r *fakeRegistry) Subscribe() (<-chan struct{}, func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ch := make(chan struct{}, 1)
	r.subs = append(r.subs, ch)
	return ch, func() {}
}

func (r *fakeRegistry) ChangesSince(rev uint64) []registry.Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []registry.Change
	for _, c := range r.changes {
		if c.Revision > rev {
			out = append(out, c)
		}
	}
	return out
}

func (r *fakeRegistry) Problems() []registry.Problem {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.problems
}

// set commits a new world with the change that describes it.
func (r *fakeRegistry) set(w world, c registry.Change) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	rev := r.view.rev + 1
	r.view = &fakeView{rev: rev, w: w}
	c.Revision = rev
	r.changes = append(r.changes, c)
	for _, ch := range r.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	return rev
}

// fakeBuilder builds grpc-go client resources for the world's service.
type fakeBuilder struct{ w world }

func newFakeBuilder(v registry.View, _ snapshot.Options) Builder {
	return &fakeBuilder{w: v.(*fakeView).w}
}

func (b *fakeBuilder) Kind(p *snapshot.Proxy) string {
	if p.IsProxylessGRPC() {
		return "ProxylessGRPC"
	}
	return "PodSidecar"
}

func (b *fakeBuilder) Build(*snapshot.Proxy) (*snapshot.Resources, error) {
	w := b.w
	target := net.JoinHostPort(w.host, strconv.Itoa(int(w.port)))
	cluster := fmt.Sprintf("outbound|%d||%s", w.port, w.host)
	l, err := apiListener(target)
	if err != nil {
		return nil, err
	}
	res := &snapshot.Resources{
		Listeners: []types.Resource{l},
		Routes:    []types.Resource{routeConfig(target, w.host, cluster)},
		Clusters:  []types.Resource{edsCluster(cluster, w.connectTimeout, w.maglev)},
		Endpoints: []types.Resource{loadAssignment(cluster, w.backend)},
	}
	if w.noRoute {
		res.Routes = nil
	}
	return res, nil
}

func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

func apiListener(name string) (*listenerv3.Listener, error) {
	router, err := anypb.New(&routerv3.Router{})
	if err != nil {
		return nil, err
	}
	hcm, err := anypb.New(&hcmv3.HttpConnectionManager{
		StatPrefix: name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource: adsSource(), RouteConfigName: name,
		}},
		HttpFilters: []*hcmv3.HttpFilter{{Name: "router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router}}},
	})
	if err != nil {
		return nil, err
	}
	return &listenerv3.Listener{Name: name, ApiListener: &listenerv3.ApiListener{ApiListener: hcm}}, nil
}

func routeConfig(name, host, cluster string) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{
		Name: name,
		VirtualHosts: []*routev3.VirtualHost{{
			Name: host, Domains: []string{name, host},
			Routes: []*routev3.Route{{
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}},
			}},
		}},
	}
}

func edsCluster(name string, timeout time.Duration, maglev bool) *clusterv3.Cluster {
	lb := clusterv3.Cluster_ROUND_ROBIN
	if maglev {
		lb = clusterv3.Cluster_MAGLEV
	}
	return &clusterv3.Cluster{
		LbPolicy:             lb,
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource()},
		ConnectTimeout:       durationpb.New(timeout),
	}
}

func loadAssignment(name, addr string) *endpointv3.ClusterLoadAssignment {
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	return &endpointv3.ClusterLoadAssignment{
		ClusterName: name,
		Endpoints: []*endpointv3.LocalityLbEndpoints{{
			Locality:            &corev3.Locality{Region: "test"},
			LoadBalancingWeight: wrapperspb.UInt32(1),
			LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
						Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)},
					}}},
				}},
				LoadBalancingWeight: wrapperspb.UInt32(1),
			}},
		}},
	}
}
