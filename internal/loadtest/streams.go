package loadtest

import (
	"bytes"
	"context"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
)

const (
	cdsType  = resourcev3.ClusterType
	ldsType  = resourcev3.ListenerType
	edsType  = resourcev3.EndpointType
	rdsType  = resourcev3.RouteType
	vhdsType = resourcev3.VirtualHostType
)

// runSotW is one Envoy-like state-of-the-world ADS stream: wildcard CDS and
// LDS, then EDS and RDS for the names those carry, ACKing every response.
func (f *fleet) runSotW(ctx context.Context, cc *grpc.ClientConn, i int) error {
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	node := f.specs[i].Node
	for _, t := range []string{cdsType, ldsType} {
		if err := st.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: t}); err != nil {
			return err
		}
	}
	s := &sotwState{}
	last := map[string]*sotwResponse{} // per type, the last response (version and nonce)
	for {
		resp := &sotwResponse{}
		if err := st.RecvMsg(resp); err != nil {
			return err
		}
		if rec := f.record.Load(); rec != nil && rec.proxy == i {
			rec.add(bytes.Clone(resp.raw))
		}
		t := resp.typeURL
		last[t] = &sotwResponse{versionInfo: resp.versionInfo, nonce: resp.nonce}
		dep, changed, err := f.sotwApply(s, t, resp.resources)
		if err != nil {
			return err
		}
		if changed {
			req := &sotwACK{typeURL: dep, names: s.sub(dep).set.encoded()}
			if prev := last[dep]; prev != nil {
				req.versionInfo, req.nonce = prev.versionInfo, prev.nonce
			}
			if err := st.SendMsg(req); err != nil {
				return err
			}
		}
		ack := &sotwACK{typeURL: t, versionInfo: resp.versionInfo, nonce: resp.nonce}
		if sub := s.sub(t); sub != nil {
			ack.names = sub.set.encoded() // as Envoy does, every ACK names them all
		}
		if err := st.SendMsg(ack); err != nil {
			return err
		}
		f.acked(i, s, t, func(yield func([]byte) bool) {
			for _, r := range resp.resources {
				if !yield(r.value) {
					return
				}
			}
		})
		if resp.release != nil {
			resp.release()
		}
	}
}

// sotwState is what a SotW proxy holds: whether the full-state types
// came, and its EDS and RDS subscriptions.
type sotwState struct {
	gotCDS, gotLDS bool
	eds, rds       subscription
}

// sub returns the subscription of type t, nil for a type not subscribed
// by name.
func (s *sotwState) sub(t string) *subscription {
	switch t {
	case edsType:
		return &s.eds
	case rdsType:
		return &s.rds
	}
	return nil
}

// names returns the names the proxy wants of type t, sorted.
func (s *sotwState) names(t string) []string {
	if sub := s.sub(t); sub != nil {
		return sub.set.names()
	}
	return nil
}

func (s *sotwState) complete() bool {
	return s.gotCDS && s.gotLDS && s.eds.complete() && s.rds.complete()
}

func (s *sotwState) settle() {
	s.eds.settle()
	s.rds.settle()
}

// take takes in one resource of a SotW response of type t, appending to
// names the names it makes the proxy want.
func (s *sotwState) take(t string, p *parsed, names []string) []string {
	switch t {
	case cdsType:
		if p.eds != "" {
			names = append(names, p.eds)
		}
	case ldsType:
		names = append(names, p.rds...)
	case edsType, rdsType:
		s.sub(t).got(p.name)
	}
	return names
}

// end ends a SotW response of type t, given the names its resources made
// the proxy want (reordered). For CDS and LDS (full state) it returns the
// dependent type and whether its names changed.
func (s *sotwState) end(sets *nameSets, t string, names []string) (string, bool) {
	switch t {
	case cdsType:
		s.gotCDS = true
		return edsType, s.eds.want(sets.intern(names))
	case ldsType:
		s.gotLDS = true
		return rdsType, s.rds.want(sets.intern(names))
	}
	return "", false
}

// sotwApply takes in a SotW response. For CDS and LDS (full state) it
// returns the dependent type and whether its names changed.
func (f *fleet) sotwApply(s *sotwState, t string, rs []wireAny) (string, bool, error) {
	if sub := s.sub(t); sub != nil && sub.settled {
		return "", false, nil // nothing an EDS or RDS resource would tell is read any more
	}
	names := f.sets.getScratch()
	defer f.sets.putScratch(names)
	for _, r := range rs {
		p, err := f.parse.parse(r.typeURL, r.value)
		if err != nil {
			return "", false, err
		}
		*names = s.take(t, p, *names)
	}
	dep, changed := s.end(f.sets, t, *names)
	return dep, changed, nil
}
