package loadtest

import (
	"context"
	"errors"
	"maps"
	"slices"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/librarymesh/controlplane/meshname"
)

// deltaStart is the first requests of a delta stream: wildcard CDS and
// LDS, and EDS and RDS subscriptions for the names wanted, each with the
// versions held.
func (p *soakProxy) deltaStart() []*discoveryv3.DeltaDiscoveryRequest {
	var out []*discoveryv3.DeltaDiscoveryRequest
	for _, t := range []string{cdsType, ldsType, edsType, rdsType} {
		req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: t, InitialResourceVersions: maps.Clone(p.held[t])}
		if t == edsType || t == rdsType {
			if req.ResourceNamesSubscribe = slices.Sorted(p.ds.subscribed(t)); len(req.ResourceNamesSubscribe) == 0 {
				continue
			}
		}
		out = append(out, req)
	}
	out[0].Node = p.spec.Node
	return out
}

func (p *soakProxy) runDelta(ctx context.Context, cc *grpc.ClientConn, sk *soak) error {
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).DeltaAggregatedResources(ctx)
	if err != nil {
		return err
	}
	for _, req := range p.deltaStart() {
		if err := st.Send(req); err != nil {
			return err
		}
	}
	for {
		p.pause(ctx)
		resp, err := st.Recv()
		if err != nil {
			return err
		}
		reqs, err := p.deltaResponse(sk, resp)
		if err != nil && !errors.Is(err, errNacked) {
			return err
		}
		for _, req := range reqs {
			if err := st.Send(req); err != nil {
				return err
			}
		}
	}
}

// deltaResponse takes in a delta response and returns the ACK (or, once, a
// NACK) and the subscription change it calls for.
func (p *soakProxy) deltaResponse(sk *soak, resp *discoveryv3.DeltaDiscoveryResponse) ([]*discoveryv3.DeltaDiscoveryRequest, error) {
	t := resp.GetTypeUrl()
	if p.nack.CompareAndSwap(true, false) {
		p.nacked.Add(1)
		return []*discoveryv3.DeltaDiscoveryRequest{{TypeUrl: t, ResponseNonce: resp.GetNonce(),
			ErrorDetail: &status.Status{Code: int32(codes.InvalidArgument), Message: "soak: rejected on purpose"}}}, errNacked
	}
	if err := sk.fl.deltaApply(p.ds, t, deltaResponseOf(resp)); err != nil {
		return nil, err
	}
	anys := make([]*anypb.Any, 0, len(resp.GetResources()))
	for _, r := range resp.GetResources() {
		anys = append(anys, r.GetResource())
	}
	p.hold(t, resp)
	out := []*discoveryv3.DeltaDiscoveryRequest{{TypeUrl: t, ResponseNonce: resp.GetNonce()}}
	if sub := p.ds.resubscribe(t); sub != nil {
		for _, n := range sub.ResourceNamesUnsubscribe {
			delete(p.held[sub.TypeUrl], n) // dropped, as Envoy drops them
		}
		out = append(out, sub)
	}
	sk.acked(p, t, anys, nil, func(host string) bool { return p.hosts[host] > 0 })
	return out, nil
}

// deltaResponseOf is a decoded response as the fleet's wire reader reads it.
func deltaResponseOf(resp *discoveryv3.DeltaDiscoveryResponse) *deltaResponse {
	d := &deltaResponse{typeURL: resp.GetTypeUrl(), nonce: resp.GetNonce(), removed: resp.GetRemovedResources()}
	for _, r := range resp.GetResources() {
		d.resources = append(d.resources, deltaResource{name: []byte(r.GetName()),
			any: wireAny{typeURL: r.GetResource().GetTypeUrl(), value: r.GetResource().GetValue()}})
	}
	return d
}

// hold records the versions a delta response leaves the proxy with, and
// for CDS the service hosts of its clusters.
func (p *soakProxy) hold(t string, resp *discoveryv3.DeltaDiscoveryResponse) {
	h := p.held[t]
	if h == nil {
		h = map[string]string{}
		p.held[t] = h
	}
	for _, r := range resp.GetResources() {
		if _, had := h[r.GetName()]; !had && t == cdsType {
			p.countHost(r.GetName(), 1)
		}
		h[r.GetName()] = r.GetVersion()
	}
	for _, n := range resp.GetRemovedResources() {
		if _, had := h[n]; had && t == cdsType {
			p.countHost(n, -1)
		}
		delete(h, n)
	}
}

func (p *soakProxy) countHost(cluster string, d int) {
	if host, ok := meshname.ClusterHost(cluster); ok {
		if p.hosts[host] += d; p.hosts[host] <= 0 {
			delete(p.hosts, host)
		}
	}
}
