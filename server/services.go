package server

import (
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	secretservice "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
)

// register registers ADS and the per-type xDS services (their REST
// Fetch methods answer Unimplemented).
func (a *ads) register(g grpc.ServiceRegistrar) {
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, adsService{a: a})
	listenerservice.RegisterListenerDiscoveryServiceServer(g, ldsService{a: a})
	routeservice.RegisterRouteDiscoveryServiceServer(g, rdsService{a: a})
	clusterservice.RegisterClusterDiscoveryServiceServer(g, cdsService{a: a})
	endpointservice.RegisterEndpointDiscoveryServiceServer(g, edsService{a: a})
	secretservice.RegisterSecretDiscoveryServiceServer(g, sdsService{a: a})
}

type adsService struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	a *ads
}

func (s adsService) StreamAggregatedResources(st discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	return s.a.streamSotW(st, "")
}

func (s adsService) DeltaAggregatedResources(st discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	return s.a.streamDelta(st, "")
}

type ldsService struct {
	listenerservice.UnimplementedListenerDiscoveryServiceServer
	a *ads
}

func (s ldsService) StreamListeners(st listenerservice.ListenerDiscoveryService_StreamListenersServer) error {
	return s.a.streamSotW(st, resourcev3.ListenerType)
}

func (s ldsService) DeltaListeners(st listenerservice.ListenerDiscoveryService_DeltaListenersServer) error {
	return s.a.streamDelta(st, resourcev3.ListenerType)
}

type rdsService struct {
	routeservice.UnimplementedRouteDiscoveryServiceServer
	a *ads
}

func (s rdsService) StreamRoutes(st routeservice.RouteDiscoveryService_StreamRoutesServer) error {
	return s.a.streamSotW(st, resourcev3.RouteType)
}

func (s rdsService) DeltaRoutes(st routeservice.RouteDiscoveryService_DeltaRoutesServer) error {
	return s.a.streamDelta(st, resourcev3.RouteType)
}

type cdsService struct {
	clusterservice.UnimplementedClusterDiscoveryServiceServer
	a *ads
}

func (s cdsService) StreamClusters(st clusterservice.ClusterDiscoveryService_StreamClustersServer) error {
	return s.a.streamSotW(st, resourcev3.ClusterType)
}

func (s cdsService) DeltaClusters(st clusterservice.ClusterDiscoveryService_DeltaClustersServer) error {
	return s.a.streamDelta(st, resourcev3.ClusterType)
}

type edsService struct {
	endpointservice.UnimplementedEndpointDiscoveryServiceServer
	a *ads
}

func (s edsService) StreamEndpoints(st endpointservice.EndpointDiscoveryService_StreamEndpointsServer) error {
	return s.a.streamSotW(st, resourcev3.EndpointType)
}

func (s edsService) DeltaEndpoints(st endpointservice.EndpointDiscoveryService_DeltaEndpointsServer) error {
	return s.a.streamDelta(st, resourcev3.EndpointType)
}

type sdsService struct {
	secretservice.UnimplementedSecretDiscoveryServiceServer
	a *ads
}

func (s sdsService) StreamSecrets(st secretservice.SecretDiscoveryService_StreamSecretsServer) error {
	return s.a.streamSotW(st, resourcev3.SecretType)
}

func (s sdsService) DeltaSecrets(st secretservice.SecretDiscoveryService_DeltaSecretsServer) error {
	return s.a.streamDelta(st, resourcev3.SecretType)
}
