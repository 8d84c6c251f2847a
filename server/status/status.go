// Package status reads a control plane's Client Status Discovery Service
// (CSDS) and formats it as a table like `istioctl proxy-status`: per proxy
// and xDS type, whether the proxy ACKed the version it was sent (SYNCED),
// has not answered yet (STALE) or rejected it (NACKED, with the error).
package status

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	statusv3 "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"

	"github.com/librarymesh/controlplane/server"
)

// State is what a proxy did with the last version of a type it was sent.
type State string

// States, from best to worst.
const (
	NotSent State = "NOT SENT" // nothing of this type sent yet
	Synced  State = "SYNCED"   // the version sent was ACKed
	Stale   State = "STALE"    // sent, not answered yet
	Nacked  State = "NACKED"   // the version sent was rejected
)

// rank orders states so that a type's worst resource wins.
func (s State) rank() int {
	return map[State]int{NotSent: 0, Synced: 1, Stale: 2, Nacked: 3}[s]
}

// TypeStatus is one proxy's status for one xDS type.
type TypeStatus struct {
	State   State
	Version string // the version the proxy uses (for NACKED: the last one it ACKed)
	Nacked  string // the rejected version
	Error   string // the proxy's error_detail for the rejected version
}

// Proxy is one connected proxy: one connection (two streams claiming one
// node ID are two Proxies with the same ID).
type Proxy struct {
	ID    string
	Conn  string                // the server's connection ID
	Kind  string                // as the server classified it
	Types map[string]TypeStatus // by short type: CDS, LDS, EDS, RDS, SDS
}

// Worst is the proxy's worst state over its types: NACKED if any type is,
// else STALE if any is, else SYNCED if any is, else NOT SENT.
func (p Proxy) Worst() State {
	w := NotSent
	for _, ts := range p.Types {
		if ts.State.rank() > w.rank() {
			w = ts.State
		}
	}
	return w
}

// Types are the xDS types in table order, short name -> type URL.
var Types = []struct{ Short, URL string }{
	{"CDS", resourcev3.ClusterType},
	{"LDS", resourcev3.ListenerType},
	{"EDS", resourcev3.EndpointType},
	{"RDS", resourcev3.RouteType},
	{"SDS", resourcev3.SecretType},
}

// Fetch asks the CSDS service on cc for every proxy's status.
func Fetch(ctx context.Context, cc grpc.ClientConnInterface) ([]Proxy, error) {
	resp, err := statusv3.NewClientStatusDiscoveryServiceClient(cc).FetchClientStatus(ctx,
		&statusv3.ClientStatusRequest{ExcludeResourceContents: true})
	if err != nil {
		return nil, fmt.Errorf("fetch client status (CSDS): %w", err)
	}
	return FromResponse(resp), nil
}

// FromResponse reads a CSDS response, sorted by proxy ID, then connection.
func FromResponse(resp *statusv3.ClientStatusResponse) []Proxy {
	out := make([]Proxy, 0, len(resp.GetConfig()))
	for _, cc := range resp.GetConfig() {
		p := Proxy{ID: cc.GetNode().GetId(), Types: map[string]TypeStatus{}}
		md := cc.GetNode().GetMetadata().GetFields()
		p.Kind = md[server.KindMetadataKey].GetStringValue()
		p.Conn = md[server.ConnectionMetadataKey].GetStringValue()
		for _, g := range cc.GetGenericXdsConfigs() {
			short := shortType(g.GetTypeUrl())
			ts := typeStatus(g)
			if old, ok := p.Types[short]; !ok || ts.State.rank() > old.State.rank() {
				p.Types[short] = ts
			}
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Proxy) int { return cmp.Or(strings.Compare(a.ID, b.ID), strings.Compare(a.Conn, b.Conn)) })
	return out
}

// typeStatus reads one resource's (or type's) entry.
func typeStatus(g *statusv3.ClientConfig_GenericXdsConfig) TypeStatus {
	ts := TypeStatus{Version: g.GetVersionInfo()}
	switch {
	case g.GetClientStatus() == adminv3.ClientResourceStatus_NACKED || g.GetConfigStatus() == statusv3.ConfigStatus_ERROR:
		ts.State = Nacked
		ts.Nacked = g.GetErrorState().GetVersionInfo()
		ts.Error = g.GetErrorState().GetDetails()
	case g.GetConfigStatus() == statusv3.ConfigStatus_SYNCED || g.GetClientStatus() == adminv3.ClientResourceStatus_ACKED:
		ts.State = Synced
	case g.GetConfigStatus() == statusv3.ConfigStatus_STALE:
		ts.State = Stale
	default:
		ts.State = NotSent
	}
	return ts
}

func shortType(typeURL string) string {
	for _, t := range Types {
		if t.URL == typeURL {
			return t.Short
		}
	}
	return typeURL[strings.LastIndex(typeURL, ".")+1:]
}
