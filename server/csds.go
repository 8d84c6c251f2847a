package server

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	statusv3 "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// csds serves envoy.service.status.v3.ClientStatusDiscoveryService: for
// each connection, each resource its proxy holds with the type's version
// and whether the proxy ACKed or NACKed it (with the NACK's error). On the
// TLS port a caller proved an identity (see RequireIdentity) and sees only
// the connections of proxies with that namespace and service account.
type csds struct {
	statusv3.UnimplementedClientStatusDiscoveryServiceServer
	pusher *pusher
}

// FetchClientStatus answers one request.
func (c *csds) FetchClientStatus(ctx context.Context, req *statusv3.ClientStatusRequest) (*statusv3.ClientStatusResponse, error) {
	return c.status(ctx, req), nil
}

// StreamClientStatus answers each request on the stream.
func (c *csds) StreamClientStatus(stream statusv3.ClientStatusDiscoveryService_StreamClientStatusServer) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(c.status(stream.Context(), req)); err != nil {
			return err
		}
	}
}

func (c *csds) status(ctx context.Context, req *statusv3.ClientStatusRequest) *statusv3.ClientStatusResponse {
	caller := callerIdentity(ctx)
	resp := &statusv3.ClientStatusResponse{}
	for _, conn := range c.pusher.connections() {
		st := conn.status()
		if !caller.owns(st.proxy) || !nodeMatches(req.GetNodeMatchers(), st.proxy.ID) {
			continue
		}
		resp.Config = append(resp.Config, clientConfig(st, req.GetExcludeResourceContents()))
	}
	return resp
}

// nodeMatches applies the node ID matchers of a request (any may match).
func nodeMatches(ms []*matcherv3.NodeMatcher, id string) bool {
	if len(ms) == 0 {
		return true
	}
	for _, m := range ms {
		if m.GetNodeId() == nil || stringMatches(m.GetNodeId(), id) {
			return true
		}
	}
	return false
}

func stringMatches(m *matcherv3.StringMatcher, s string) bool {
	switch p := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		return s == p.Exact
	case *matcherv3.StringMatcher_Prefix:
		return strings.HasPrefix(s, p.Prefix)
	case *matcherv3.StringMatcher_Suffix:
		return strings.HasSuffix(s, p.Suffix)
	case *matcherv3.StringMatcher_Contains:
		return strings.Contains(s, p.Contains)
	}
	return false
}

// clientConfig lists a connection's resources, type by type, with the
// status of the type's last response.
func clientConfig(st connStatus, noContents bool) *statusv3.ClientConfig {
	cc := &statusv3.ClientConfig{Node: annotatedNode(st)}
	for i, typeURL := range xdsTypes {
		ts := &st.types[i]
		if ts.Responses == 0 {
			continue
		}
		base := genericConfig(typeURL, ts)
		var names []string
		var resources map[string]types.Resource
		if st.snap != nil && ts.Sent == st.snap.version(typeURL) {
			resources = st.snap.resources(typeURL)
			for n := range resources {
				names = append(names, n)
			}
		}
		if len(names) == 0 {
			cc.GenericXdsConfigs = append(cc.GenericXdsConfigs, base)
			continue
		}
		slices.Sort(names)
		for _, n := range names {
			g := genericConfigCopy(base)
			g.Name = n
			if !noContents {
				g.XdsConfig, _ = anypb.New(resources[n])
			}
			cc.GenericXdsConfigs = append(cc.GenericXdsConfigs, g)
		}
	}
	return cc
}

// genericConfig is the status of one type of a proxy.
func genericConfig(typeURL string, ts *TypeStatus) *statusv3.ClientConfig_GenericXdsConfig {
	g := &statusv3.ClientConfig_GenericXdsConfig{TypeUrl: typeURL, VersionInfo: ts.Sent}
	if !ts.SentAt.IsZero() {
		g.LastUpdated = timestamppb.New(ts.SentAt)
	}
	switch {
	case ts.Nacked != "" && ts.Nacked == ts.Sent:
		g.ConfigStatus = statusv3.ConfigStatus_ERROR
		g.ClientStatus = adminv3.ClientResourceStatus_NACKED
		g.ErrorState = &adminv3.UpdateFailureState{Details: ts.NackError, VersionInfo: ts.Nacked, LastUpdateAttempt: timestamppb.New(ts.AnsweredAt)}
		g.VersionInfo = ts.Acked
	case ts.Acked != "" && ts.Acked == ts.Sent:
		g.ConfigStatus = statusv3.ConfigStatus_SYNCED
		g.ClientStatus = adminv3.ClientResourceStatus_ACKED
	case ts.Sent != "":
		g.ConfigStatus = statusv3.ConfigStatus_STALE
		g.ClientStatus = adminv3.ClientResourceStatus_REQUESTED
	default:
		g.ConfigStatus = statusv3.ConfigStatus_NOT_SENT
		g.ClientStatus = adminv3.ClientResourceStatus_REQUESTED
	}
	return g
}

func genericConfigCopy(g *statusv3.ClientConfig_GenericXdsConfig) *statusv3.ClientConfig_GenericXdsConfig {
	return &statusv3.ClientConfig_GenericXdsConfig{
		TypeUrl: g.TypeUrl, VersionInfo: g.VersionInfo, LastUpdated: g.LastUpdated,
		ConfigStatus: g.ConfigStatus, ClientStatus: g.ClientStatus, ErrorState: g.ErrorState,
	}
}
