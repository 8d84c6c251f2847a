package server

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// xdsCache holds each node's snapshot and answers xDS watches from it.
//
// State-of-the-world watches are answered here, from resources marshaled
// once and shared by every proxy that gets them (go-control-plane's
// snapshot cache marshals every resource again for every response), in
// make-before-break order (CDS, EDS, LDS, RDS, SDS). A watch opens when the
// proxy lacks the type's version or a subscribed resource. Names are
// matched exactly, as grpc-go subscribes, one type at a time.
//
// A version a proxy rejected is not sent to it again until the snapshot of
// that type changes (go-control-plane answers a NACK, which carries the
// last accepted version, by resending at once, in a tight loop).
//
// Delta watches go to go-control-plane's snapshot cache, which tracks
// per-resource versions (it does not resend after a NACK).
type xdsCache struct {
	delta cache.SnapshotCache
	nacks *tracker

	mu     sync.Mutex
	nodes  map[string]*sotwNode
	nextID int64
	diffs  map[diffKey][]string
}

type sotwNode struct {
	snap    *nodeSnapshot
	watches map[int64]sotwWatch
	synced  map[string]synced // type URL -> what the stream holds (see synced)
}

type sotwWatch struct {
	req  *cache.Request
	sub  cache.Subscription
	out  chan cache.Response
	full bool // respond with every subscribed resource (set by needsResponse)
	// changed, when set by needsResponse, holds every name the stream may
	// lack (see synced): respond then looks at those alone.
	changed []string
	// known and subs identify the stream's returned resources and its
	// subscription (see syncKey). go-control-plane changes neither while
	// the watch is open (it cancels the watch first), so they are computed
	// once per watch, not on every check of a push.
	known uintptr
	subs  uint64
}

var _ cache.Cache = (*xdsCache)(nil)

func newXDSCache(delta cache.SnapshotCache, nacks *tracker) *xdsCache {
	return &xdsCache{delta: delta, nacks: nacks, nodes: map[string]*sotwNode{}, diffs: map[diffKey][]string{}}
}

// nodeLocked returns a node's state, creating it.
func (c *xdsCache) nodeLocked(id string) *sotwNode {
	n := c.nodes[id]
	if n == nil {
		n = &sotwNode{watches: map[int64]sotwWatch{}, synced: map[string]synced{}}
		c.nodes[id] = n
	}
	return n
}

// CreateWatch opens a state-of-the-world watch, or answers it at once.
func (c *xdsCache) CreateWatch(req *cache.Request, sub cache.Subscription, out chan cache.Response) (func(), error) {
	nodeID := req.GetNode().GetId()
	w := sotwWatch{req: req, sub: sub, out: out}
	w.known, w.subs = syncKey(sub)
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodeLocked(nodeID)
	if n.snap != nil && c.needsResponse(n, nodeID, n.snap, &w) {
		return func() {}, c.respond(context.Background(), n, n.snap, w)
	}
	c.nextID++
	id := c.nextID
	n.watches[id] = w
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if n := c.nodes[nodeID]; n != nil {
			delete(n.watches, id)
		}
	}, nil
}

// needsResponse reports whether the proxy lacks something of the type.
//
// For LDS and CDS (full state in SotW) that is the type's version or a
// subscribed resource. For EDS, RDS and SDS a response may carry only
// some resources, so only subscribed resources whose content the proxy
// lacks are sent (incremental EDS over SotW, as Istio does): an endpoint
// change costs one ClusterLoadAssignment per proxy, not all of them.
//
// After a NACK the proxy is treated as holding the version it rejected,
// so that version is not resent, and the next version is sent in full.
func (c *xdsCache) needsResponse(n *sotwNode, nodeID string, s *nodeSnapshot, w *sotwWatch) bool {
	typeURL := w.req.GetTypeUrl()
	tr := s.types[typeURL]
	if tr == nil {
		return false // a type we do not serve
	}
	rejected, nacked := c.nacks.rejected(nodeID, typeURL)
	w.full = nacked || cache.ResourceRequiresFullStateInSotw(typeURL)
	version := w.req.GetVersionInfo()
	if nacked {
		version = rejected
	}
	if !nacked {
		if lacks, ok := c.lacksLocked(n, w, tr); ok {
			return lacks
		}
	}
	known := w.sub.ReturnedResources()
	var lacks bool
	switch {
	case !w.full:
		lacks = w.anySubscribed(tr, func(i int) bool { return known[tr.names[i]] != tr.vers[i] })
	case version != tr.version:
		return true
	default:
		lacks = w.anySubscribed(tr, func(i int) bool {
			_, ok := known[tr.names[i]]
			return !ok
		})
	}
	if !lacks && !nacked {
		n.markSyncedLocked(w, tr, nil)
	}
	return lacks
}

// anySubscribed reports whether pred holds for a resource of the type the
// watch subscribes to (pred gets its list index): the whole list for a
// wildcard subscription, else the subscribed names; it allocates nothing.
func (w *sotwWatch) anySubscribed(tr *typeResources, pred func(i int) bool) bool {
	if w.sub.IsWildcard() {
		for i := range tr.names {
			if pred(i) {
				return true
			}
		}
		return false
	}
	for name := range w.sub.SubscribedResources() {
		if _, ok := tr.versionOf(name); ok && pred(tr.index[name]) {
			return true
		}
	}
	return false
}

// respond sends the watch the type's resources it subscribes to: all of
// them, or (see needsResponse) only those the proxy lacks.
func (c *xdsCache) respond(ctx context.Context, n *sotwNode, s *nodeSnapshot, w sotwWatch) error {
	tr := s.types[w.req.GetTypeUrl()]
	resp := &discoveryv3.DiscoveryResponse{VersionInfo: tr.version, TypeUrl: w.req.GetTypeUrl()}
	known := w.sub.ReturnedResources()
	subscribed := w.sub.SubscribedResources()
	if w.changed != nil && !w.full {
		return c.respondChanged(ctx, n, tr, w, resp)
	}
	returned := make(map[string]string, len(tr.names))
	for i, name := range tr.names {
		if !w.sub.IsWildcard() {
			if _, ok := subscribed[name]; !ok {
				continue
			}
		}
		v := tr.vers[i]
		returned[name] = v
		if !w.full && known[name] == v {
			continue
		}
		resp.Resources = append(resp.Resources, tr.anys[i])
	}
	n.markSyncedLocked(&w, tr, returned)
	select {
	case w.out <- &sotwResponse{req: w.req, resp: resp, returned: returned}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// respondChanged is respond for a stream that held everything of an
// earlier typeResources: only the changed names are looked at, and the
// stream's known versions are copied and updated.
func (c *xdsCache) respondChanged(ctx context.Context, n *sotwNode, tr *typeResources, w sotwWatch, resp *discoveryv3.DiscoveryResponse) error {
	known := w.sub.ReturnedResources()
	subscribed := w.sub.SubscribedResources()
	returned := maps.Clone(known)
	for _, name := range w.changed {
		if _, ok := subscribed[name]; !w.sub.IsWildcard() && !ok {
			continue
		}
		v, _ := tr.versionOf(name)
		returned[name] = v
		if known[name] != v {
			resp.Resources = append(resp.Resources, tr.anys[tr.index[name]])
		}
	}
	n.markSyncedLocked(&w, tr, returned)
	select {
	case w.out <- &sotwResponse{req: w.req, resp: resp, returned: returned}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// SetSnapshot stores a node's snapshot and answers its open watches for
// the types whose version changed.
func (c *xdsCache) SetSnapshot(ctx context.Context, nodeID string, s *nodeSnapshot) error {
	if err := c.delta.SetSnapshot(ctx, nodeID, s); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodeLocked(nodeID)
	n.snap = s
	ids := make([]int64, 0, len(n.watches))
	for id := range n.watches {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b int64) int {
		return typeOrder(n.watches[a].req.GetTypeUrl()) - typeOrder(n.watches[b].req.GetTypeUrl())
	})
	for _, id := range ids {
		w := n.watches[id]
		if !c.needsResponse(n, nodeID, s, &w) {
			continue
		}
		delete(n.watches, id)
		if err := c.respond(ctx, n, s, w); err != nil {
			return err
		}
	}
	return nil
}

// typeOrder is a type's place in make-before-break order.
func typeOrder(typeURL string) int {
	if i := slices.Index(xdsTypes, typeURL); i >= 0 {
		return i
	}
	return len(xdsTypes)
}

// ClearSnapshot forgets a node.
func (c *xdsCache) ClearSnapshot(nodeID string) {
	c.delta.ClearSnapshot(nodeID)
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.nodes, nodeID)
}

// CreateDeltaWatch opens a delta watch.
func (c *xdsCache) CreateDeltaWatch(req *cache.DeltaRequest, sub cache.Subscription, out chan cache.DeltaResponse) (func(), error) {
	return c.delta.CreateDeltaWatch(req, sub, out)
}

// Fetch (REST xDS) is not served.
func (c *xdsCache) Fetch(context.Context, *cache.Request) (cache.Response, error) {
	return nil, errors.New("REST xDS is not served; use ADS")
}

// sotwResponse is a state-of-the-world response of shared, marshaled
// resources. The DiscoveryResponse is made per response (the server sets
// its nonce); the Anys in it are shared.
type sotwResponse struct {
	req      *cache.Request
	resp     *discoveryv3.DiscoveryResponse
	returned map[string]string
}

var _ cache.Response = (*sotwResponse)(nil)

func (r *sotwResponse) GetDiscoveryResponse() (*discoveryv3.DiscoveryResponse, error) {
	return r.resp, nil
}
func (r *sotwResponse) GetRequest() *discoveryv3.DiscoveryRequest { return r.req }
func (r *sotwResponse) GetVersion() (string, error)               { return r.resp.GetVersionInfo(), nil }
func (r *sotwResponse) GetResponseVersion() string                { return r.resp.GetVersionInfo() }
func (r *sotwResponse) GetReturnedResources() map[string]string   { return r.returned }
func (r *sotwResponse) GetContext() context.Context               { return context.Background() }
