package loadtest

import (
	"fmt"
	"hash/maphash"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// parsed is what the client needs from one resource: its name and the
// names it makes Envoy subscribe to (an EDS cluster's service name, a
// listener's RDS route configs).
type parsed struct {
	name string
	eds  string
	rds  []string
	vhds bool // a route configuration whose virtual hosts come over VHDS
}

// parseCache parses each distinct resource once: proxies share most of
// their resources byte for byte, and the client must not be the bottleneck.
type parseCache struct {
	seed maphash.Seed
	m    sync.Map // uint64 -> *parsed
}

func newParseCache() *parseCache { return &parseCache{seed: maphash.MakeSeed()} }

func (c *parseCache) parse(typeURL string, value []byte) (*parsed, error) {
	key := maphash.Bytes(c.seed, value) ^ maphash.String(c.seed, typeURL)
	if p, ok := c.m.Load(key); ok {
		return p.(*parsed), nil
	}
	p, err := parseResource(typeURL, value)
	if err != nil {
		return nil, err
	}
	c.m.Store(key, p)
	return p, nil
}

func parseResource(typeURL string, value []byte) (*parsed, error) {
	switch typeURL {
	case resourcev3.ClusterType:
		var c clusterv3.Cluster
		if err := proto.Unmarshal(value, &c); err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		p := &parsed{name: c.GetName()}
		if c.GetType() == clusterv3.Cluster_EDS {
			p.eds = c.GetName()
			if n := c.GetEdsClusterConfig().GetServiceName(); n != "" {
				p.eds = n
			}
		}
		return p, nil
	case resourcev3.ListenerType:
		return parseListener(value)
	case resourcev3.EndpointType:
		var cla endpointv3.ClusterLoadAssignment
		if err := proto.Unmarshal(value, &cla); err != nil {
			return nil, fmt.Errorf("load assignment: %w", err)
		}
		return &parsed{name: cla.GetClusterName()}, nil
	case resourcev3.RouteType:
		var rc routev3.RouteConfiguration
		if err := proto.Unmarshal(value, &rc); err != nil {
			return nil, fmt.Errorf("route configuration: %w", err)
		}
		return &parsed{name: rc.GetName(), vhds: rc.GetVhds() != nil}, nil
	}
	return &parsed{}, nil
}

// parseListener finds the RDS route configs of a listener's HTTP
// connection managers.
func parseListener(b []byte) (*parsed, error) {
	var l listenerv3.Listener
	if err := proto.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("listener: %w", err)
	}
	p := &parsed{name: l.GetName()}
	hcms := []*anypb.Any{l.GetApiListener().GetApiListener()}
	chains := append([]*listenerv3.FilterChain{l.GetDefaultFilterChain()}, l.GetFilterChains()...)
	for _, fc := range chains {
		for _, f := range fc.GetFilters() {
			hcms = append(hcms, f.GetTypedConfig())
		}
	}
	for _, a := range hcms {
		if a == nil || a.GetTypeUrl() != "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager" {
			continue
		}
		var h hcmv3.HttpConnectionManager
		if err := proto.Unmarshal(a.GetValue(), &h); err != nil {
			return nil, fmt.Errorf("listener %s: http connection manager: %w", l.GetName(), err)
		}
		if n := h.GetRds().GetRouteConfigName(); n != "" {
			p.rds = append(p.rds, n)
		}
	}
	return p, nil
}
