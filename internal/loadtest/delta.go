package loadtest

import (
	"context"
	"slices"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
)

// deltaState is what a delta stream tracks beyond proxyState: each
// cluster's EDS name, each listener's RDS names and whether each route
// configuration takes its virtual hosts over VHDS, how many of them need
// each EDS, RDS and VHDS name, and the subscription changes a response
// called for. It is kept incrementally: a response of one new cluster
// costs one name, not a walk of every cluster (which at 10,000 services
// made the client, not the server, the bottleneck of a new service).
type deltaState struct {
	*proxyState
	clusters  map[string]string
	listeners map[string][]string
	routes    map[string]bool
	refs      map[string]map[string]int  // dependent type -> name -> resources needing it
	pending   map[string]map[string]bool // dependent type -> name -> subscribe (true) or unsubscribe
}

func newDeltaState() *deltaState {
	s := &deltaState{proxyState: newProxyState(), clusters: map[string]string{}, listeners: map[string][]string{}, routes: map[string]bool{},
		refs: map[string]map[string]int{}, pending: map[string]map[string]bool{}}
	s.vhdsWant = map[string]bool{}
	return s
}

// ref records one more resource needing name of type dep.
func (s *deltaState) ref(dep, name string) {
	if name == "" {
		return
	}
	if s.refs[dep] == nil {
		s.refs[dep] = map[string]int{}
	}
	if s.refs[dep][name]++; s.refs[dep][name] == 1 {
		s.change(dep, name, true)
	}
}

// unref records one resource fewer needing name of type dep.
func (s *deltaState) unref(dep, name string) {
	if name == "" || s.refs[dep][name] == 0 {
		return
	}
	if s.refs[dep][name]--; s.refs[dep][name] == 0 {
		delete(s.refs[dep], name)
		s.change(dep, name, false)
	}
}

// change notes a subscription change; one that undoes a pending one
// cancels it.
func (s *deltaState) change(dep, name string, subscribe bool) {
	if s.pending[dep] == nil {
		s.pending[dep] = map[string]bool{}
	}
	if prev, ok := s.pending[dep][name]; ok && prev != subscribe {
		delete(s.pending[dep], name)
		return
	}
	s.pending[dep][name] = subscribe
}

// setCluster, setListener and setRoute replace (or, with ok false,
// remove) a resource and what it needs.
func (s *deltaState) setCluster(name, eds string, ok bool) {
	if old, had := s.clusters[name]; had {
		s.unref(edsType, old)
	}
	delete(s.clusters, name)
	if ok {
		s.clusters[name] = eds
		s.ref(edsType, eds)
	}
}

func (s *deltaState) setListener(name string, rds []string, ok bool) {
	for _, n := range s.listeners[name] {
		s.unref(rdsType, n)
	}
	delete(s.listeners, name)
	if ok {
		s.listeners[name] = rds
		for _, n := range rds {
			s.ref(rdsType, n)
		}
	}
}

func (s *deltaState) setRoute(name string, vhds, ok bool) {
	if s.routes[name] {
		s.unref(vhdsType, name)
	}
	delete(s.routes, name)
	if ok {
		s.routes[name] = vhds
		if vhds {
			s.ref(vhdsType, name)
		}
	}
}

// runDelta is one Envoy-like incremental ADS stream: wildcard CDS and LDS,
// then EDS and RDS subscriptions for the names those carry.
func (f *fleet) runDelta(ctx context.Context, cc *grpc.ClientConn, i int) error {
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).DeltaAggregatedResources(ctx)
	if err != nil {
		return err
	}
	node := f.specs[i].Node
	for _, t := range []string{cdsType, ldsType} {
		if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: t}); err != nil {
			return err
		}
	}
	s := newDeltaState()
	for {
		resp, err := st.Recv()
		if err != nil {
			return err
		}
		t := resp.GetTypeUrl()
		values, err := f.deltaApply(s, t, resp)
		if err != nil {
			return err
		}
		if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: t, ResponseNonce: resp.GetNonce()}); err != nil {
			return err
		}
		if sub := s.resubscribe(t); sub != nil {
			if err := st.Send(sub); err != nil {
				return err
			}
		}
		f.acked(i, s.proxyState, t, slices.Values(values))
	}
}

// deltaApply takes in a delta response and returns its resources' encodings.
func (f *fleet) deltaApply(s *deltaState, t string, resp *discoveryv3.DeltaDiscoveryResponse) ([][]byte, error) {
	values := make([][]byte, 0, len(resp.GetResources()))
	for _, r := range resp.GetResources() {
		values = append(values, r.GetResource().GetValue())
		p, err := f.parse.parse(r.GetResource().GetTypeUrl(), r.GetResource().GetValue())
		if err != nil {
			return nil, err
		}
		switch t {
		case cdsType:
			s.setCluster(r.GetName(), p.eds, true)
		case ldsType:
			s.setListener(r.GetName(), p.rds, true)
		case rdsType:
			s.setRoute(r.GetName(), p.vhds, true)
			s.haveLocked(t)[r.GetName()] = true
		default:
			s.haveLocked(t)[r.GetName()] = true
		}
	}
	for _, n := range resp.GetRemovedResources() {
		switch t {
		case cdsType:
			s.setCluster(n, "", false)
		case ldsType:
			s.setListener(n, nil, false)
		case rdsType:
			s.setRoute(n, false, false)
			delete(s.haveLocked(t), n)
		default:
			delete(s.haveLocked(t), n)
		}
	}
	switch t {
	case cdsType:
		s.gotCDS = true
	case ldsType:
		s.gotLDS = true
	case vhdsType:
		s.gotVHDS = true
	}
	return values, nil
}

// resubscribe returns the EDS, RDS or VHDS subscription change that a CDS,
// LDS or RDS response calls for, or nil. Like Envoy's VHDS, it subscribes
// to a route configuration's virtual hosts by the route configuration's name.
func (s *deltaState) resubscribe(t string) *discoveryv3.DeltaDiscoveryRequest {
	var dep string
	switch t {
	case cdsType:
		dep = edsType
	case ldsType:
		dep = rdsType
	case rdsType:
		dep = vhdsType
	default:
		return nil
	}
	changes := s.pending[dep]
	if len(changes) == 0 {
		return nil
	}
	delete(s.pending, dep)
	want := s.want(dep)
	req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: dep}
	for n, subscribe := range changes {
		if subscribe {
			want[n] = true
			req.ResourceNamesSubscribe = append(req.ResourceNamesSubscribe, n)
		} else {
			delete(want, n)
			req.ResourceNamesUnsubscribe = append(req.ResourceNamesUnsubscribe, n)
		}
	}
	slices.Sort(req.ResourceNamesSubscribe)
	slices.Sort(req.ResourceNamesUnsubscribe)
	return req
}
