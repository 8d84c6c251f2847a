package server

import (
	"context"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/librarymesh/controlplane/registry"
	"github.com/librarymesh/controlplane/registry/autoregister"
	"github.com/librarymesh/controlplane/snapshot"
)

// HealthInfoType is the type URL of Istio's workload health reports: its
// agent sends a DiscoveryRequest of this type whenever the probe's result
// changes, with no error_detail when the workload is healthy and the
// probe's error in error_detail when it is not. Nothing is sent back.
const HealthInfoType = "type.googleapis.com/istio.v1.HealthInformation"

// autoRegister auto-registers a proxy whose node names a WorkloadGroup
// (AUTO_REGISTER_GROUP): its proven identity must be the group's. Other
// proxies get a nil session.
func (a *ads) autoRegister(ctx context.Context, px *snapshot.Proxy, node *corev3.Node, caller *Identity) (*autoregister.Session, error) {
	group := px.Metadata.AutoRegisterGroup
	if group == "" {
		return nil, nil
	}
	if a.autoreg == nil {
		a.metrics.rejected.WithLabelValues("AutoRegistrationOff").Inc()
		return nil, status.Errorf(codes.FailedPrecondition, "node %s names WorkloadGroup %s/%s, but this server does not auto-register workloads",
			px.ID, px.Namespace, group)
	}
	w := autoregister.Workload{ProxyID: px.ID, Group: group, Namespace: px.Namespace, IP: px.IPs[0],
		Network: px.Metadata.Network, Labels: px.Metadata.Labels}
	if l := node.GetLocality(); l != nil {
		w.Locality = registry.LocalityString(l.GetRegion(), l.GetZone(), l.GetSubZone())
	}
	if caller != nil && caller.Namespace == px.Namespace {
		w.ServiceAccount = caller.ServiceAccount
	}
	sess, err := a.autoreg.Connect(ctx, w)
	if err != nil {
		a.metrics.rejected.WithLabelValues("AutoRegistrationRefused").Inc()
		a.log.Warn("rejecting xDS stream", "node", px.ID, "error", err)
		return nil, err
	}
	return sess, nil
}

// reportHealth records a health report of an auto-registered workload. A
// report from any other proxy is ignored, as Istio does for workloads
// without a WorkloadEntry to update.
func (s *xdsStream) reportHealth(r *request) error {
	if s.c.autoreg == nil {
		s.a.log.Debug("health report from a proxy that is not auto-registered; ignored", "conn", s.c.id)
		return nil
	}
	if err := s.c.autoreg.Health(s.ctx, !r.isErr, r.errMsg); err != nil {
		s.a.log.Warn("cannot record a health report", "conn", s.c.id, "error", err)
	}
	return nil
}
