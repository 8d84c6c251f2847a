package main

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/librarymesh/controlplane/internal/e2e"
)

// adsWatcher is a pod sidecar's SotW ADS stream written by hand: it asks for
// every cluster, then for the endpoints of the EDS clusters, and ACKs every
// response as Envoy does. It records what it holds and how many responses of
// each type it got.
type adsWatcher struct {
	stream e2e.ADSClient

	mu        sync.Mutex
	clusters  map[string]*clusterv3.Cluster
	endpoints map[string]*endpointv3.ClusterLoadAssignment // by EDS service name
	edsNames  []string
	versions  map[string]string // by type URL
	nonces    map[string]string
	responses map[string]int
	err       error
}

// watchADS opens the stream for node and returns once the first clusters
// arrived.
func watchADS(t *testing.T, addr, node string) *adsWatcher {
	t.Helper()
	stream := e2e.ADSStream(t, addr)
	w := &adsWatcher{stream: stream, clusters: map[string]*clusterv3.Cluster{},
		endpoints: map[string]*endpointv3.ClusterLoadAssignment{}, versions: map[string]string{},
		nonces: map[string]string{}, responses: map[string]int{}}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: node}, TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatal(err)
	}
	go w.run()
	w.waitState(t, "the first clusters for "+node, 20*time.Second, func(s adsState) bool {
		return s.versions[resourcev3.ClusterType] != ""
	})
	return w
}

func (w *adsWatcher) run() {
	for {
		resp, err := w.stream.Recv()
		if err != nil {
			w.mu.Lock()
			w.err = err
			w.mu.Unlock()
			return
		}
		for _, req := range w.handle(resp) {
			if err := w.stream.Send(req); err != nil {
				return // Recv reports the stream's end
			}
		}
	}
}

// handle applies a response and returns the requests to send: its ACK and,
// when the EDS clusters changed, the new endpoint subscription.
func (w *adsWatcher) handle(resp *discoveryv3.DiscoveryResponse) []*discoveryv3.DiscoveryRequest {
	w.mu.Lock()
	defer w.mu.Unlock()
	typ := resp.GetTypeUrl()
	w.responses[typ]++
	w.versions[typ], w.nonces[typ] = resp.GetVersionInfo(), resp.GetNonce()
	switch typ {
	case resourcev3.ClusterType:
		w.clusters = map[string]*clusterv3.Cluster{}
		for _, a := range resp.GetResources() {
			var c clusterv3.Cluster
			if err := a.UnmarshalTo(&c); err != nil {
				w.err = fmt.Errorf("decode cluster: %w", err)
				continue
			}
			w.clusters[c.GetName()] = &c
		}
	case resourcev3.EndpointType:
		// EDS responses may carry only the assignments that changed.
		for _, a := range resp.GetResources() {
			var cla endpointv3.ClusterLoadAssignment
			if err := a.UnmarshalTo(&cla); err != nil {
				w.err = fmt.Errorf("decode endpoints: %w", err)
				continue
			}
			w.endpoints[cla.GetClusterName()] = &cla
		}
	}
	reqs := []*discoveryv3.DiscoveryRequest{w.request(typ)}
	if typ == resourcev3.ClusterType {
		names := w.edsServiceNames()
		if !slices.Equal(names, w.edsNames) && len(names) > 0 {
			w.edsNames = names
			maps.DeleteFunc(w.endpoints, func(name string, _ *endpointv3.ClusterLoadAssignment) bool {
				return !slices.Contains(names, name)
			})
			reqs = append(reqs, w.request(resourcev3.EndpointType))
		}
	}
	return reqs
}

// request is the ACK (or first request) of a type with its subscription.
func (w *adsWatcher) request(typ string) *discoveryv3.DiscoveryRequest {
	req := &discoveryv3.DiscoveryRequest{TypeUrl: typ, VersionInfo: w.versions[typ], ResponseNonce: w.nonces[typ]}
	if typ == resourcev3.EndpointType {
		req.ResourceNames = w.edsNames
	}
	return req
}

func (w *adsWatcher) edsServiceNames() []string {
	var names []string
	for name, c := range w.clusters {
		if c.GetType() != clusterv3.Cluster_EDS {
			continue
		}
		if sn := c.GetEdsClusterConfig().GetServiceName(); sn != "" {
			name = sn
		}
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// adsState is a copy of what an adsWatcher holds.
type adsState struct {
	clusters  []string            // sorted names
	endpoints map[string][]string // EDS name -> sorted "ip:port"
	weights   map[string][]uint32 // EDS name -> endpoint weights in endpoint order
	versions  map[string]string
	responses map[string]int
	err       error
}

func (w *adsWatcher) state() adsState {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := adsState{clusters: slices.Sorted(maps.Keys(w.clusters)), endpoints: map[string][]string{},
		weights: map[string][]uint32{}, versions: maps.Clone(w.versions), responses: maps.Clone(w.responses), err: w.err}
	for name, cla := range w.endpoints {
		addrs := []string{}
		for _, l := range cla.GetEndpoints() {
			for _, ep := range l.GetLbEndpoints() {
				sa := ep.GetEndpoint().GetAddress().GetSocketAddress()
				addrs = append(addrs, net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))))
				s.weights[name] = append(s.weights[name], ep.GetLoadBalancingWeight().GetValue())
			}
		}
		slices.Sort(addrs)
		s.endpoints[name] = addrs
	}
	return s
}

// waitState waits until the watcher's state satisfies cond and returns it.
func (w *adsWatcher) waitState(t *testing.T, what string, timeout time.Duration, cond func(adsState) bool) adsState {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := w.state()
		if s.err != nil {
			t.Fatalf("ADS stream ended while waiting for %s: %v", what, s.err)
		}
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; the sidecar has clusters %v, endpoints %v, versions %v",
				timeout, what, s.clusters, s.endpoints, s.versions)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
