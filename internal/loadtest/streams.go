package loadtest

import (
	"bytes"
	"context"
	"maps"
	"slices"

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
	s := newProxyState()
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
			s.wantList[dep] = slices.Sorted(maps.Keys(s.want(dep)))
			s.wantWire[dep] = encodeNames(s.wantList[dep])
			req := &sotwACK{typeURL: dep, names: s.wantWire[dep]}
			if prev := last[dep]; prev != nil {
				req.versionInfo, req.nonce = prev.versionInfo, prev.nonce
			}
			if err := st.SendMsg(req); err != nil {
				return err
			}
		}
		ack := &sotwACK{typeURL: t, versionInfo: resp.versionInfo, nonce: resp.nonce}
		if t == edsType || t == rdsType {
			ack.names = s.wantWire[t] // as Envoy does, every ACK names them all
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

func (s *proxyState) want(t string) map[string]bool {
	switch t {
	case edsType:
		return s.edsWant
	case vhdsType:
		return s.vhdsWant
	}
	return s.rdsWant
}

// sotwApply takes in a SotW response. For CDS and LDS (full state) it
// returns the dependent type and whether its names changed.
func (f *fleet) sotwApply(s *proxyState, t string, rs []wireAny) (string, bool, error) {
	names := map[string]bool{}
	for _, r := range rs {
		p, err := f.parse.parse(r.typeURL, r.value)
		if err != nil {
			return "", false, err
		}
		switch t {
		case cdsType:
			if p.eds != "" {
				names[p.eds] = true
			}
		case ldsType:
			for _, n := range p.rds {
				names[n] = true
			}
		default:
			s.haveLocked(t)[p.name] = true
		}
	}
	switch t {
	case cdsType:
		s.gotCDS = true
		changed := !maps.Equal(names, s.edsWant)
		s.edsWant = names
		return edsType, changed, nil
	case ldsType:
		s.gotLDS = true
		changed := !maps.Equal(names, s.rdsWant)
		s.rdsWant = names
		return rdsType, changed, nil
	}
	return "", false, nil
}

func (s *proxyState) haveLocked(t string) map[string]bool {
	h := s.have[t]
	if h == nil {
		h = map[string]bool{}
		s.have[t] = h
	}
	return h
}
