package server

import (
	"context"
	"log/slog"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/librarymesh/controlplane/snapshot"
)

// callbacks connect go-control-plane's stream events to the tracker, the
// pusher and the metrics. A first request with a malformed node ID ends
// its stream with InvalidArgument.
type callbacks struct {
	serverv3.CallbackFuncs
	log     *slog.Logger
	tracker *tracker
	pusher  *pusher
	conv    *convergence
	metrics *metrics
}

var _ serverv3.Callbacks = (*callbacks)(nil)

// OnStreamRequest handles a state-of-the-world request.
func (c *callbacks) OnStreamRequest(id int64, req *discoveryv3.DiscoveryRequest) error {
	key := streamKey{id: id}
	if err := c.first(key, req.GetNode()); err != nil {
		return err
	}
	c.answer(key, req.GetTypeUrl(), req.GetResponseNonce(), req.GetErrorDetail().GetMessage(), req.GetErrorDetail() != nil)
	return nil
}

// OnStreamDeltaRequest handles a delta request.
func (c *callbacks) OnStreamDeltaRequest(id int64, req *discoveryv3.DeltaDiscoveryRequest) error {
	key := streamKey{id: id, delta: true}
	if err := c.first(key, req.GetNode()); err != nil {
		return err
	}
	c.answer(key, req.GetTypeUrl(), req.GetResponseNonce(), req.GetErrorDetail().GetMessage(), req.GetErrorDetail() != nil)
	return nil
}

// first checks the node of a stream's first request and connects the proxy.
func (c *callbacks) first(key streamKey, node *corev3.Node) error {
	if c.tracker.knows(key) {
		return nil
	}
	px, err := snapshot.ParseProxy(node)
	if err != nil {
		c.metrics.rejected.WithLabelValues("MalformedNodeID").Inc()
		c.log.Warn("rejecting xDS stream", "node", node.GetId(), "error", err)
		return status.Error(codes.InvalidArgument, err.Error())
	}
	// Build before the first watch opens, so it is answered at once.
	if c.tracker.openStream(key, node) {
		kind := c.pusher.connect(context.Background(), px)
		c.tracker.setKind(px.ID, kind)
		c.log.Info("proxy connected", "node", px.ID, "kind", kind, "delta", key.delta)
	}
	return nil
}

// answer records the ACK or NACK a request carries.
func (c *callbacks) answer(key streamKey, typeURL, nonce, msg string, isErr bool) {
	a := c.tracker.answered(key, typeURL, nonce, msg, isErr)
	switch {
	case a.ack:
		c.conv.acked(a.nodeID, a.typeURL, a.version)
	case a.nack:
		c.metrics.nacks.WithLabelValues(shortType(a.typeURL)).Inc()
		if a.newNack {
			c.log.Warn("proxy rejected config; not resending it until it changes",
				"node", a.nodeID, "type", shortType(a.typeURL), "version", a.version, "error", a.errText)
		}
	}
}

// OnStreamResponse records a state-of-the-world response.
func (c *callbacks) OnStreamResponse(_ context.Context, id int64, _ *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
	c.tracker.sent(streamKey{id: id}, resp.GetTypeUrl(), resp.GetNonce(), resp.GetVersionInfo(), len(resp.GetResources()))
	c.countSent(resp.GetTypeUrl(), len(resp.GetResources()))
}

// OnStreamDeltaResponse records a delta response.
func (c *callbacks) OnStreamDeltaResponse(id int64, _ *discoveryv3.DeltaDiscoveryRequest, resp *discoveryv3.DeltaDiscoveryResponse) {
	c.tracker.sent(streamKey{id: id, delta: true}, resp.GetTypeUrl(), resp.GetNonce(), resp.GetSystemVersionInfo(), len(resp.GetResources()))
	c.countSent(resp.GetTypeUrl(), len(resp.GetResources()))
}

func (c *callbacks) countSent(typeURL string, n int) {
	t := shortType(typeURL)
	c.metrics.pushes.WithLabelValues(t).Inc()
	c.metrics.resources.WithLabelValues(t).Add(float64(n))
}

// OnStreamClosed forgets a state-of-the-world stream.
func (c *callbacks) OnStreamClosed(id int64, _ *corev3.Node) { c.closed(streamKey{id: id}) }

// OnDeltaStreamClosed forgets a delta stream.
func (c *callbacks) OnDeltaStreamClosed(id int64, _ *corev3.Node) {
	c.closed(streamKey{id: id, delta: true})
}

func (c *callbacks) closed(key streamKey) {
	nodeID, last := c.tracker.closeStream(key)
	if !last {
		return
	}
	c.pusher.disconnect(nodeID)
	c.conv.forget(nodeID)
	c.log.Info("proxy disconnected", "node", nodeID)
}
