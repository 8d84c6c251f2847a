package nodeagent

import (
	"fmt"
	"net/netip"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/librarymesh/controlplane/meshname"
)

var loopbackPrefix = netip.MustParsePrefix(meshname.LoopbackPrefix)

// answerListeners reads the VM sidecar's listeners from an LDS response on
// the registration stream: the service loopback addresses they bind are
// the mesh names DNS answers (others get NXDOMAIN; a response without any
// leaves DNS as it was). It ACKs the response,
// or NACKs one it cannot read (keeping the names it had). Other responses
// are ignored.
func (a *Agent) answerListeners(resp *discoveryv3.DiscoveryResponse, send func(*discoveryv3.DiscoveryRequest) error) error {
	if resp.GetTypeUrl() != resourcev3.ListenerType || a.dns == nil {
		return nil
	}
	req := &discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ListenerType, ResponseNonce: resp.GetNonce()}
	bound, err := boundLoopbacks(resp)
	if err != nil {
		a.log.Warn("cannot read the VM sidecar's listeners; DNS keeps the names it had", "error", err)
		req.ErrorDetail = status.New(codes.InvalidArgument, err.Error()).Proto()
	} else {
		req.VersionInfo = resp.GetVersionInfo()
		// No service listener at all is what a sidecar gets before the
		// control plane knows its workload: not a reason to deny every name.
		if len(bound) == 0 {
			return send(req)
		}
		if a.dns.setServices(bound) {
			a.log.Info("DNS answers the mesh names of the sidecar's listeners", "services", len(bound), "version", resp.GetVersionInfo())
		}
	}
	return send(req)
}

// boundLoopbacks is the set of service loopback addresses (in
// meshname.LoopbackPrefix) the listeners of resp bind.
func boundLoopbacks(resp *discoveryv3.DiscoveryResponse) (map[netip.Addr]bool, error) {
	out := map[netip.Addr]bool{}
	for _, r := range resp.GetResources() {
		l := &listenerv3.Listener{}
		if err := r.UnmarshalTo(l); err != nil {
			return nil, fmt.Errorf("LDS resource of type %s: %w", r.GetTypeUrl(), err)
		}
		addr, err := netip.ParseAddr(l.GetAddress().GetSocketAddress().GetAddress())
		if err == nil && loopbackPrefix.Contains(addr) {
			out[addr] = true
		}
	}
	return out, nil
}
