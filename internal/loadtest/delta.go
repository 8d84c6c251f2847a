package loadtest

import (
	"bytes"
	"context"
	"iter"
	"slices"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
)

// deltaState is what a delta stream tracks: each cluster's EDS name, each
// listener's RDS names and whether each route configuration takes its
// virtual hosts over VHDS, how many of them need each EDS, RDS and VHDS
// name, the subscription changes a response called for, and, until the
// proxy is configured, which EDS and RDS resources it has. It is kept
// incrementally: a response of one new cluster costs one name, not a walk
// of every cluster (which at 10,000 services made the client, not the
// server, the bottleneck of a new service). What the proxy is subscribed
// to is not kept apart: it is the names needed, less the changes not yet
// asked for (see subscribed), one map of 10,000 names per proxy fewer.
type deltaState struct {
	gotCDS, gotLDS bool
	gotVHDS        bool                       // a VHDS response came (route configurations with vhds)
	settled        bool                       // configured: have is not kept
	clusters       map[string]string          // EDS cluster -> its EDS name
	listeners      map[string][]string        // listener -> its RDS names, if any
	routes         map[string]bool            // route configurations with vhds
	refs           map[string]map[string]int  // dependent type -> name -> resources needing it
	pending        map[string]map[string]bool // dependent type -> name -> subscribe (true) or unsubscribe
	have           map[string]map[string]bool // EDS or RDS -> names held
	// hint is the size of the response being taken in: maps made for it
	// are made that large (a first CDS response of scenario S names 1000
	// clusters, and growing five maps a thousand times over took a fifth
	// of the client's CPU while the fleet connected).
	hint int
}

func newDeltaState() *deltaState {
	return &deltaState{clusters: map[string]string{}, listeners: map[string][]string{}, routes: map[string]bool{},
		refs: map[string]map[string]int{}, pending: map[string]map[string]bool{},
		have: map[string]map[string]bool{edsType: {}, rdsType: {}}}
}

// subscribed returns the names of type dep the proxy is subscribed to: a
// name is needed and its subscription asked for, or no longer needed and
// its unsubscription not yet asked for.
func (s *deltaState) subscribed(dep string) iter.Seq[string] {
	return func(yield func(string) bool) {
		for n := range s.refs[dep] {
			if s.pending[dep][n] { // its subscription is still to be asked for
				continue
			}
			if !yield(n) {
				return
			}
		}
		for n, subscribe := range s.pending[dep] {
			if !subscribe && !yield(n) {
				return
			}
		}
	}
}

func (s *deltaState) complete() bool {
	if s.settled {
		return true
	}
	if !s.gotCDS || !s.gotLDS {
		return false
	}
	if !s.gotVHDS {
		for range s.subscribed(vhdsType) {
			return false
		}
	}
	for _, t := range []string{edsType, rdsType} {
		for n := range s.subscribed(t) {
			if !s.have[t][n] {
				return false
			}
		}
	}
	return true
}

func (s *deltaState) settle() {
	s.settled, s.have = true, nil
}

// presize readies s for a response of n resources of type t: the maps it
// fills, while empty, are made to hold them at once.
func (s *deltaState) presize(t string, n int) {
	s.hint = n
	if h := s.have[t]; h != nil && len(h) == 0 && n > 8 {
		s.have[t] = make(map[string]bool, n)
	}
	if t == cdsType && len(s.clusters) == 0 && n > 8 {
		s.clusters = make(map[string]string, n)
	}
}

// hold records that the proxy holds (or, with ok false, no longer holds)
// the resource of type t named name.
func (s *deltaState) hold(t, name string, ok bool) {
	h := s.have[t]
	if h == nil { // not kept for t, or settled
		return
	}
	if ok {
		h[name] = true
	} else {
		delete(h, name)
	}
}

// ref records one more resource needing name of type dep.
func (s *deltaState) ref(dep, name string) {
	if name == "" {
		return
	}
	if s.refs[dep] == nil {
		s.refs[dep] = make(map[string]int, s.hint)
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
		s.pending[dep] = make(map[string]bool, s.hint)
	}
	if prev, ok := s.pending[dep][name]; ok && prev != subscribe {
		delete(s.pending[dep], name)
		return
	}
	s.pending[dep][name] = subscribe
}

// setCluster, setListener and setRoute replace (or, with ok false,
// remove) a resource and what it needs. A resource that needs nothing is
// not kept: its removal changes nothing (at 10,000 services most
// listeners name no route configuration).
func (s *deltaState) setCluster(name, eds string, ok bool) {
	if old, had := s.clusters[name]; had {
		s.unref(edsType, old)
	}
	delete(s.clusters, name)
	if ok && eds != "" {
		s.clusters[name] = eds
		s.ref(edsType, eds)
	}
}

func (s *deltaState) setListener(name string, rds []string, ok bool) {
	for _, n := range s.listeners[name] {
		s.unref(rdsType, n)
	}
	delete(s.listeners, name)
	if ok && len(rds) > 0 {
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
	if ok && vhds {
		s.routes[name] = true
		s.ref(vhdsType, name)
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
		resp := &deltaResponse{}
		if err := st.RecvMsg(resp); err != nil {
			return err
		}
		if rec := f.record.Load(); rec != nil && rec.proxy == i {
			rec.add(bytes.Clone(resp.raw)) // one proxy's, for the bytes floor
		}
		t := resp.typeURL
		if err := f.deltaApply(s, t, resp); err != nil {
			return err
		}
		if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: t, ResponseNonce: resp.nonce}); err != nil {
			return err
		}
		if sub := s.resubscribe(t); sub != nil {
			if err := st.Send(sub); err != nil {
				return err
			}
		}
		f.acked(i, s, t, func(yield func([]byte) bool) {
			for _, r := range resp.resources {
				if !yield(r.any.value) {
					return
				}
			}
		})
		resp.release()
	}
}

// deltaApply takes in a delta response.
func (f *fleet) deltaApply(s *deltaState, t string, resp *deltaResponse) error {
	s.presize(t, len(resp.resources))
	for _, r := range resp.resources {
		p, err := f.parse.parse(r.any.typeURL, r.any.value)
		if err != nil {
			return err
		}
		// The parse cache's copy of the name, shared by every proxy, is
		// what the maps keep, not a copy of this response's.
		name := p.name
		if string(r.name) != p.name {
			name = string(r.name)
		}
		switch t {
		case cdsType:
			s.setCluster(name, p.eds, true)
		case ldsType:
			s.setListener(name, p.rds, true)
		case rdsType:
			s.setRoute(name, p.vhds, true)
		}
		s.hold(t, name, true)
	}
	for _, n := range resp.removed {
		switch t {
		case cdsType:
			s.setCluster(n, "", false)
		case ldsType:
			s.setListener(n, nil, false)
		case rdsType:
			s.setRoute(n, false, false)
		}
		s.hold(t, n, false)
	}
	switch t {
	case cdsType:
		s.gotCDS = true
	case ldsType:
		s.gotLDS = true
	case vhdsType:
		s.gotVHDS = true
	}
	return nil
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
	delete(s.pending, dep) // asked for now: subscribed follows
	req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: dep}
	for n, subscribe := range changes {
		if subscribe {
			req.ResourceNamesSubscribe = append(req.ResourceNamesSubscribe, n)
		} else {
			req.ResourceNamesUnsubscribe = append(req.ResourceNamesUnsubscribe, n)
		}
	}
	slices.Sort(req.ResourceNamesSubscribe)
	slices.Sort(req.ResourceNamesUnsubscribe)
	return req
}
