package loadtest

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
)

// soakProxy is one simulated proxy of the soak: like the fleet's, but it
// keeps what it holds across reconnects (as Envoy does) and presents it on
// the new stream: SotW the last ACKed version of each type, delta each
// resource's version (initial_resource_versions).
type soakProxy struct {
	i     int
	spec  ProxySpec
	delta bool
	slow  time.Duration // pause before each read (a slow reader)
	nack  atomic.Bool   // reject the next response once
	// churner: disconnects and reconnects at random; nacker: rejects one
	// response during the changes.
	churner, nacker bool

	ss       *sotwState                   // SotW: the subscriptions
	ds       *deltaState                  // delta: each cluster's and listener's dependents, the subscriptions
	versions map[string]string            // SotW: type -> last ACKed version
	held     map[string]map[string]string // delta: type -> name -> version
	hosts    map[string]int               // delta: service host -> clusters held for it

	configured atomic.Bool
	dropped    atomic.Int64 // streams the server ended
	streams    atomic.Int64 // streams opened
	nacked     atomic.Int64 // responses rejected
}

func newSoakProxy(i int, spec ProxySpec, delta bool) *soakProxy {
	p := &soakProxy{i: i, spec: spec, delta: delta,
		versions: map[string]string{}, held: map[string]map[string]string{}, hosts: map[string]int{}}
	if delta {
		p.ds = newDeltaState()
	} else {
		p.ss = &sotwState{}
	}
	return p
}

// state is the proxy's state, SotW or delta.
func (p *soakProxy) state() readiness {
	if p.delta {
		return p.ds
	}
	return p.ss
}

// errNacked marks a response the proxy rejected on purpose.
var errNacked = errors.New("rejected on purpose")

// stream runs one stream until it ends. It reports whether the server ended
// it (rather than ctx, the proxy's own disconnect).
func (p *soakProxy) stream(ctx context.Context, cc *grpc.ClientConn, sk *soak) (dropped bool, err error) {
	p.streams.Add(1)
	if p.delta {
		err = p.runDelta(ctx, cc, sk)
	} else {
		err = p.runSotW(ctx, cc, sk)
	}
	if ctx.Err() != nil || grpcstatus.Code(err) == codes.Canceled {
		return false, nil
	}
	return true, err
}

// sotwStart is the first requests of a SotW stream: wildcard CDS and LDS,
// and EDS and RDS for the names held, each with the version held.
func (p *soakProxy) sotwStart() []*discoveryv3.DiscoveryRequest {
	var out []*discoveryv3.DiscoveryRequest
	for _, t := range []string{cdsType, ldsType, edsType, rdsType} {
		req := &discoveryv3.DiscoveryRequest{TypeUrl: t, VersionInfo: p.versions[t]}
		if t == edsType || t == rdsType {
			if req.ResourceNames = p.ss.names(t); len(req.ResourceNames) == 0 {
				continue
			}
		}
		out = append(out, req)
	}
	out[0].Node = p.spec.Node
	return out
}

func (p *soakProxy) runSotW(ctx context.Context, cc *grpc.ClientConn, sk *soak) error {
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	for _, req := range p.sotwStart() {
		if err := st.Send(req); err != nil {
			return err
		}
	}
	nonces := map[string]string{}
	for {
		p.pause(ctx)
		resp, err := st.Recv()
		if err != nil {
			return err
		}
		reqs, err := p.sotwResponse(sk, resp, nonces)
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

// sotwResponse takes in a SotW response and returns the requests it calls
// for: a subscription change of the dependent type, then the ACK (or, once,
// a NACK).
func (p *soakProxy) sotwResponse(sk *soak, resp *discoveryv3.DiscoveryResponse, nonces map[string]string) ([]*discoveryv3.DiscoveryRequest, error) {
	t := resp.GetTypeUrl()
	nonces[t] = resp.GetNonce()
	if p.nack.CompareAndSwap(true, false) {
		p.nacked.Add(1)
		return []*discoveryv3.DiscoveryRequest{{TypeUrl: t, VersionInfo: p.versions[t], ResponseNonce: resp.GetNonce(),
			ResourceNames: p.ss.names(t), ErrorDetail: &status.Status{Code: int32(codes.InvalidArgument), Message: "soak: rejected on purpose"}}}, errNacked
	}
	rs := resp.GetResources()
	parsed := make([]*parsed, len(rs))
	for k, r := range rs {
		var err error
		if parsed[k], err = sk.parse.parse(r.GetTypeUrl(), r.GetValue()); err != nil {
			return nil, err
		}
	}
	var out []*discoveryv3.DiscoveryRequest
	if dep, changed := p.sotwApply(sk.fl.sets, t, parsed); changed {
		out = append(out, &discoveryv3.DiscoveryRequest{TypeUrl: dep, ResourceNames: p.ss.names(dep),
			VersionInfo: p.versions[dep], ResponseNonce: nonces[dep]})
	}
	ack := &discoveryv3.DiscoveryRequest{TypeUrl: t, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce(),
		ResourceNames: p.ss.names(t)}
	p.versions[t] = resp.GetVersionInfo()
	sk.acked(p, t, rs, parsed, nil)
	return append(out, ack), nil
}

// sotwApply is sotwApply of the fleet on parsed resources.
func (p *soakProxy) sotwApply(sets *nameSets, t string, rs []*parsed) (string, bool) {
	names := sets.getScratch()
	defer sets.putScratch(names)
	for _, r := range rs {
		*names = p.ss.take(t, r, *names)
	}
	return p.ss.end(sets, t, *names)
}

// pause is a slow reader's pause before reading.
func (p *soakProxy) pause(ctx context.Context) {
	if p.slow <= 0 {
		return
	}
	select {
	case <-ctx.Done():
	case <-time.After(p.slow):
	}
}

// role describes the proxy for reports: its protocol and what it does.
func (p *soakProxy) role() string {
	r := "sotw"
	if p.delta {
		r = "delta"
	}
	switch {
	case p.slow > 0:
		r += ", slow reader"
	case p.churner:
		r += ", churner"
	case p.nacker:
		r += ", nacker"
	}
	return r
}
