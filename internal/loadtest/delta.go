package loadtest

import (
	"context"
	"slices"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
)

// deltaState is what a delta stream tracks beyond proxyState: each
// cluster's EDS name, each listener's RDS names and whether each route
// configuration takes its virtual hosts over VHDS.
type deltaState struct {
	*proxyState
	clusters  map[string]string
	listeners map[string][]string
	routes    map[string]bool
}

func newDeltaState() *deltaState {
	return &deltaState{proxyState: newProxyState(), clusters: map[string]string{}, listeners: map[string][]string{}, routes: map[string]bool{}}
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
			s.clusters[r.GetName()] = p.eds
		case ldsType:
			s.listeners[r.GetName()] = p.rds
		case rdsType:
			s.routes[r.GetName()] = p.vhds
			s.haveLocked(t)[r.GetName()] = true
		default:
			s.haveLocked(t)[r.GetName()] = true
		}
	}
	for _, n := range resp.GetRemovedResources() {
		switch t {
		case cdsType:
			delete(s.clusters, n)
		case ldsType:
			delete(s.listeners, n)
		case rdsType:
			delete(s.routes, n)
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
	want, dep := map[string]bool{}, ""
	switch t {
	case rdsType:
		dep = vhdsType
		for n, vhds := range s.routes {
			if vhds {
				want[n] = true
			}
		}
	case cdsType:
		dep = edsType
		for _, n := range s.clusters {
			if n != "" {
				want[n] = true
			}
		}
	case ldsType:
		dep = rdsType
		for _, ns := range s.listeners {
			for _, n := range ns {
				want[n] = true
			}
		}
	default:
		return nil
	}
	old := s.want(dep)
	req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: dep}
	for n := range want {
		if !old[n] {
			req.ResourceNamesSubscribe = append(req.ResourceNamesSubscribe, n)
		}
	}
	for n := range old {
		if !want[n] {
			req.ResourceNamesUnsubscribe = append(req.ResourceNamesUnsubscribe, n)
		}
	}
	switch dep {
	case edsType:
		s.edsWant = want
	case rdsType:
		s.rdsWant = want
	default:
		s.vhdsWant = want
	}
	if len(req.ResourceNamesSubscribe) == 0 && len(req.ResourceNamesUnsubscribe) == 0 {
		return nil
	}
	slices.Sort(req.ResourceNamesSubscribe)
	slices.Sort(req.ResourceNamesUnsubscribe)
	return req
}
