package server

import (
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"
)

// nackCache wraps go-control-plane's snapshot cache so that a version a
// proxy rejected is not sent to it again until the snapshot of that type
// changes. go-control-plane answers a NACK (which carries the last accepted
// version) by resending the current version at once, in a tight loop. Here
// a request from a node that rejected version X is treated as if it held X:
// the watch stays open until the type's version differs from X.
type nackCache struct {
	cache.SnapshotCache
	nacks *tracker
}

// CreateWatch opens a state-of-the-world watch.
func (c *nackCache) CreateWatch(req *cache.Request, sub cache.Subscription, out chan cache.Response) (func(), error) {
	if v, ok := c.nacks.rejected(req.GetNode().GetId(), req.GetTypeUrl()); ok && req.GetVersionInfo() != v {
		held := proto.Clone(req).(*cache.Request)
		held.VersionInfo = v
		req = held
	}
	return c.SnapshotCache.CreateWatch(req, sub, out)
}
