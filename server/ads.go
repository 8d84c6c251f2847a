package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/librarymesh/controlplane/snapshot"
)

// ads serves xDS streams, state of the world and delta, for ADS and the
// per-type services.
//
// A stream keeps, per type, what the proxy holds as a reference to the
// typeSnapshot it last ACKed and the (interned) subscription it had then;
// both are shared with other proxies. A push compares that with the
// current typeSnapshot through a diff made once per pair of shared lists,
// so an endpoint change costs each proxy one map lookup per changed name
// and one response carrying the changed ClusterLoadAssignments.
//
// Responses of a type wait for the proxy to answer the previous one (ACK
// or NACK). A version a proxy rejected is not sent to it again until the
// type's snapshot changes. Responses go out in make-before-break order
// (CDS, EDS, LDS, RDS, SDS).
type ads struct {
	log     *slog.Logger
	tracker *tracker
	pusher  *pusher
	conv    *convergence
	metrics *metrics
	done    chan struct{} // closed when the server stops

	diffs *diffCache
	subs  *interner
	ids   atomic.Int64

	mu    sync.Mutex
	nodes map[string]*adsNode
}

// adsNode is a connected node: its snapshot and its open streams.
type adsNode struct {
	snap    *nodeSnapshot
	streams map[*xdsStream]struct{}
}

func newADS(log *slog.Logger, t *tracker, m *metrics, conv *convergence) *ads {
	return &ads{
		log: log, tracker: t, metrics: m, conv: conv, done: make(chan struct{}),
		diffs: newDiffCache(), subs: newInterner(), nodes: map[string]*adsNode{},
	}
}

// stop ends every stream.
func (a *ads) stop() { close(a.done) }

// SetSnapshot stores a node's snapshot and wakes its streams.
func (a *ads) SetSnapshot(_ context.Context, nodeID string, snap *nodeSnapshot) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := a.nodes[nodeID]
	if n == nil {
		return nil // every stream of the node closed meanwhile
	}
	n.snap = snap
	for s := range n.streams {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// Rotate starts a new generation of the diff cache (once per rebuild).
func (a *ads) Rotate() { a.diffs.rotate() }

// ClearSnapshot forgets a node whose last stream closed.
func (a *ads) ClearSnapshot(nodeID string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if n := a.nodes[nodeID]; n != nil && len(n.streams) == 0 {
		delete(a.nodes, nodeID)
	}
}

// request is a SotW or delta request.
type request struct {
	node                   *corev3.Node
	typeURL, nonce         string
	isErr                  bool
	errMsg                 string
	names                  []string          // SotW, when set is nil
	set                    *nameSet          // SotW: the names; delta: the subscribed names; interned
	subscribe, unsubscribe []string          // delta
	initial                map[string]string // delta: versions held on the first request
}

// xdsStream is one stream of a proxy.
type xdsStream struct {
	a           *ads
	ctx         context.Context
	key         streamKey
	delta       bool
	defaultType string // of a per-type service; "" for ADS
	nodeID      string
	node        *adsNode // set by the first request
	wake        chan struct{}
	types       [5]*typeState // by typeIndex
	nonce       uint64

	send func(m any) error // the stream's SendMsg
}

// typeState is what a stream knows of one type.
type typeState struct {
	typeURL   string
	requested bool
	sub       subscription // what the proxy asks for now
	legacy    bool         // SotW: wildcard because the first request named nothing

	// The proxy holds what heldSub selects of held (nothing when held is nil).
	held    *typeSnapshot
	heldSub subscription

	pending   *sentResponseState // the last response, not answered yet
	lastNonce string
	nacked    *typeSnapshot // rejected: not sent again

	// delta only
	initial map[string]string // versions named by the first request, until the first response
	force   []string          // names subscribed since the last response: sent whatever is held
	answer  bool              // no response yet: a wildcard subscription is answered even if empty
}

type sentResponseState struct {
	nonce string
	ts    *typeSnapshot
	sub   subscription
}

// sotwServer and deltaServer are the streams of every xDS service.
type sotwServer interface {
	Context() context.Context
	SendMsg(m any) error
	RecvMsg(m any) error
}

type deltaServer interface {
	Context() context.Context
	SendMsg(m any) error
	RecvMsg(m any) error
}

// streamSotW serves a state-of-the-world stream; typeURL is the type of a
// per-type service, "" for ADS.
func (a *ads) streamSotW(st sotwServer, typeURL string) error {
	s := a.newStream(st.Context(), false, typeURL)
	s.send = st.SendMsg
	// Owned by the receiving goroutine: per type, the name set last
	// resolved and the hash of the encoded names it came from.
	type lastNames struct {
		raw uint64
		set *nameSet
	}
	known := map[string]lastNames{}
	lookup := func(typeURL string) (uint64, *nameSet) {
		l := known[typeURL]
		return l.raw, l.set
	}
	return a.serve(s, func() (*request, error) {
		m := &sotwRequest{seed: a.subs.seed, known: lookup, interned: a.subs.lookup}
		if err := st.RecvMsg(m); err != nil {
			return nil, err
		}
		r := &m.req
		out := &request{
			node: r.GetNode(), typeURL: r.GetTypeUrl(), nonce: r.GetResponseNonce(),
			isErr: r.GetErrorDetail() != nil, errMsg: r.GetErrorDetail().GetMessage(),
			set: m.set, names: m.names,
		}
		if out.set == nil && len(out.names) > 0 && !slices.Contains(out.names, "*") {
			out.set, out.names = a.subs.of(out.names), nil
		}
		if out.set != nil {
			known[out.typeURL] = lastNames{raw: m.raw, set: out.set}
		}
		return out, nil
	})
}

// streamDelta serves a delta stream; typeURL as for streamSotW.
func (a *ads) streamDelta(st deltaServer, typeURL string) error {
	s := a.newStream(st.Context(), true, typeURL)
	s.send = st.SendMsg
	return a.serve(s, func() (*request, error) {
		m := &deltaRequest{seed: a.subs.seed, interned: a.subs.lookup}
		if err := st.RecvMsg(m); err != nil {
			return nil, err
		}
		r := &m.req
		return &request{
			node: r.GetNode(), typeURL: r.GetTypeUrl(), nonce: r.GetResponseNonce(),
			isErr: r.GetErrorDetail() != nil, errMsg: r.GetErrorDetail().GetMessage(),
			subscribe: r.GetResourceNamesSubscribe(), set: m.set, unsubscribe: r.GetResourceNamesUnsubscribe(),
			initial: r.GetInitialResourceVersions(),
		}, nil
	})
}

func (a *ads) newStream(ctx context.Context, delta bool, typeURL string) *xdsStream {
	return &xdsStream{
		a: a, ctx: ctx, key: streamKey{id: a.ids.Add(1), delta: delta}, delta: delta,
		defaultType: typeURL, wake: make(chan struct{}, 1),
	}
}

// serve runs a stream: requests are read on their own goroutine, and
// requests and pushes are handled here, one at a time.
func (a *ads) serve(s *xdsStream, recv func() (*request, error)) error {
	reqs := make(chan *request)
	errc := make(chan error, 1)
	go func() {
		for {
			r, err := recv()
			if err != nil {
				errc <- err
				return
			}
			select {
			case reqs <- r:
			case <-s.ctx.Done():
				return
			}
		}
	}()
	defer a.close(s)
	for {
		var err error
		select {
		case <-s.ctx.Done():
			return s.ctx.Err()
		case <-a.done:
			return status.Error(codes.Unavailable, "control plane is shutting down")
		case err = <-errc:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case r := <-reqs:
			if err = s.handle(r); err == nil {
				err = s.flush()
			}
		case <-s.wake:
			err = s.flush()
		}
		if err != nil {
			return err
		}
	}
}

// open checks the node of a stream's first request and connects the proxy.
func (a *ads) open(s *xdsStream, node *corev3.Node) error {
	px, err := snapshot.ParseProxy(node)
	if err != nil {
		a.metrics.rejected.WithLabelValues("MalformedNodeID").Inc()
		a.log.Warn("rejecting xDS stream", "node", node.GetId(), "error", err)
		return status.Error(codes.InvalidArgument, err.Error())
	}
	s.nodeID = px.ID
	a.mu.Lock()
	n := a.nodes[px.ID]
	if n == nil {
		n = &adsNode{streams: map[*xdsStream]struct{}{}}
		a.nodes[px.ID] = n
	}
	n.streams[s] = struct{}{}
	s.node = n
	a.mu.Unlock()
	if a.tracker.openStream(s.key, node) {
		// Built before the request is handled, so it is answered at once.
		kind := a.pusher.connect(s.ctx, px)
		a.tracker.setKind(px.ID, kind)
		a.log.Info("proxy connected", "node", px.ID, "kind", kind, "delta", s.delta)
	}
	return nil
}

// close forgets a stream, and its proxy with its last stream.
func (a *ads) close(s *xdsStream) {
	if s.node == nil {
		return
	}
	a.mu.Lock()
	delete(s.node.streams, s)
	a.mu.Unlock()
	nodeID, last := a.tracker.closeStream(s.key)
	if !last {
		return
	}
	a.pusher.disconnect(nodeID)
	a.conv.forget(nodeID)
	a.log.Info("proxy disconnected", "node", nodeID)
}

// handle takes in one request.
func (s *xdsStream) handle(r *request) error {
	if s.node == nil {
		if err := s.a.open(s, r.node); err != nil {
			return err
		}
	}
	typeURL := r.typeURL
	switch {
	case typeURL == "":
		typeURL = s.defaultType
	case s.defaultType != "" && typeURL != s.defaultType:
		return status.Errorf(codes.InvalidArgument, "type %s requested on the %s service", typeURL, shortType(s.defaultType))
	}
	i := typeIndex(typeURL)
	if i < 0 {
		s.a.log.Debug("ignoring a request for a type not served", "node", s.nodeID, "type", typeURL)
		return nil
	}
	t := s.types[i]
	if t == nil {
		t = &typeState{typeURL: typeURL}
		s.types[i] = t
	}
	if s.delta {
		s.handleDelta(t, r)
	} else {
		s.handleSotW(t, r)
	}
	return nil
}

// handleSotW takes in a SotW request: the answer to the last response and
// the subscription. A request answering an older response is stale and
// ignored, as the protocol says.
func (s *xdsStream) handleSotW(t *typeState, r *request) {
	if r.nonce != "" {
		switch {
		case t.pending != nil && r.nonce == t.pending.nonce:
			s.answered(t, r)
		case r.nonce != t.lastNonce:
			return
		}
	}
	first := !t.requested
	t.requested = true
	explicit, star := r.set, false
	if explicit == nil && len(r.names) > 0 {
		names := slices.DeleteFunc(slices.Clone(r.names), func(n string) bool { return n == "*" })
		star = len(names) < len(r.names)
		explicit = s.a.subs.of(names)
	}
	sub := subscription{wildcard: star}
	switch {
	case star:
	case explicit == nil && (first || t.legacy):
		sub.wildcard, t.legacy = true, true
	default:
		sub.set, t.legacy = explicit, false
	}
	t.sub = sub
}

// handleDelta takes in a delta request: the answer to the last response
// and the changes to the subscription.
func (s *xdsStream) handleDelta(t *typeState, r *request) {
	if r.nonce != "" && t.pending != nil && r.nonce == t.pending.nonce {
		s.answered(t, r)
	}
	sub := t.sub
	first := !t.requested
	if first {
		t.requested, t.answer = true, true
		t.initial = r.initial
		sub.wildcard = len(r.subscribe) == 0 && r.set == nil // legacy wildcard
	}
	if r.set != nil && sub.set == nil && len(r.unsubscribe) == 0 {
		// Names another stream subscribed to already: the set is shared.
		sub.set = r.set
		if !first {
			for n := range r.set.names {
				t.force = append(t.force, n)
			}
		}
		t.sub = sub
		return
	}
	adds := r.subscribe
	if r.set != nil {
		adds = make([]string, 0, len(r.set.names))
		for n := range r.set.names {
			adds = append(adds, n)
		}
	}
	if slices.Contains(adds, "*") {
		sub.wildcard = true
		adds = slices.DeleteFunc(slices.Clone(adds), func(n string) bool { return n == "*" })
	}
	var removes []string
	for _, n := range r.unsubscribe {
		if n == "*" {
			sub.wildcard = false
			continue
		}
		removes = append(removes, n)
	}
	if !first {
		// Sent whatever the stream holds: the proxy dropped them when it
		// unsubscribed. (A first request says what it holds instead.)
		t.force = append(t.force, adds...)
	}
	sub.set = s.a.subs.update(sub.set, adds, removes)
	t.sub = sub
}

// answered records the ACK or NACK of the pending response.
func (s *xdsStream) answered(t *typeState, r *request) {
	p := t.pending
	t.pending = nil
	newNack := s.a.tracker.answered(s.nodeID, t.typeURL, p.ts.version, r.errMsg, r.isErr)
	if r.isErr {
		t.nacked = p.ts
		s.a.metrics.nacks.WithLabelValues(shortType(t.typeURL)).Inc()
		if newNack {
			s.a.log.Warn("proxy rejected config; not resending it until it changes",
				"node", s.nodeID, "type", shortType(t.typeURL), "version", p.ts.version, "error", r.errMsg)
		}
		return
	}
	t.held, t.heldSub, t.nacked = p.ts, p.sub, nil
	s.a.conv.acked(s.nodeID, t.typeURL, p.ts.version)
}

// flush sends each type's response the proxy lacks.
func (s *xdsStream) flush() error {
	if s.node == nil {
		return nil
	}
	s.a.mu.Lock()
	snap := s.node.snap
	s.a.mu.Unlock()
	if snap == nil {
		return nil
	}
	for i, t := range s.types {
		if t == nil || !t.requested || t.pending != nil {
			continue
		}
		var err error
		if s.delta {
			err = s.flushDelta(t, snap.types[i])
		} else {
			err = s.flushSotW(t, snap.types[i])
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// synced records that the proxy holds all it subscribes to of ts.
func (t *typeState) synced(ts *typeSnapshot) { t.held, t.heldSub = ts, t.sub }

// lacks reports whether the proxy lacks a resource's current content.
func (t *typeState) lacks(name, version string) bool {
	if t.held == nil || !t.heldSub.has(name) {
		return true
	}
	v, ok := t.held.versionOf(name)
	return !ok || v != version
}

// eachSubscribed calls fn for each resource of ts the subscription covers.
func (t *typeState) eachSubscribed(ts *typeSnapshot, fn func(tr *typeResources, i int)) {
	if t.sub.wildcard || t.sub.set == nil || len(t.sub.set.names) > ts.len() {
		for _, tr := range ts.parts() {
			for i, n := range tr.names {
				if t.sub.has(n) {
					fn(tr, i)
				}
			}
		}
		return
	}
	for n := range t.sub.set.names {
		if tr, i, ok := ts.find(n); ok {
			fn(tr, i)
		}
	}
}

// picked is the resources chosen for one response, by list index. When
// they are the whole shared list, that list's encoding (made once) is sent
// instead of encoding them again for this proxy.
type picked struct {
	ts          *typeSnapshot
	whole       bool // every resource of ts; shared and own are unused
	sharedAll   bool // every resource of ts.shared; shared is unused
	shared, own []int
	seen        map[string]bool // when names may be picked twice
}

func (p *picked) add(tr *typeResources, i int) {
	if p.seen != nil {
		if p.seen[tr.names[i]] {
			return
		}
		p.seen[tr.names[i]] = true
	}
	if tr == p.ts.shared {
		if !p.sharedAll {
			p.shared = append(p.shared, i)
		}
	} else {
		p.own = append(p.own, i)
	}
}

func (p *picked) len() int {
	switch {
	case p.whole:
		return p.ts.len()
	case p.sharedAll:
		return len(p.ts.shared.names) + len(p.own)
	}
	return len(p.shared) + len(p.own)
}

func (p *picked) allShared() bool {
	return p.whole || p.sharedAll || len(p.shared) > 0 && len(p.shared) == len(p.ts.shared.names)
}

// subscribed picks every resource of ts the stream subscribes to. When
// that is the whole shared list (a sidecar subscribing to every cluster's
// endpoints), no index is collected for it.
func (p *picked) subscribed(t *typeState) {
	if !t.coversShared(p.ts) {
		t.eachSubscribed(p.ts, p.add)
		return
	}
	p.sharedAll = len(p.ts.shared.names) > 0
	for i, n := range p.ts.own.names {
		if t.sub.has(n) {
			p.add(p.ts.own, i)
		}
	}
}

// coversShared reports whether the subscription covers every resource of
// ts's shared list.
func (t *typeState) coversShared(ts *typeSnapshot) bool {
	if t.sub.wildcard {
		return true
	}
	if t.sub.set == nil || len(t.sub.set.names) < len(ts.shared.names) {
		return false
	}
	for _, n := range ts.shared.names {
		if _, ok := t.sub.set.names[n]; !ok {
			return false
		}
	}
	return true
}

// sotw returns the picked resources as Anys to encode, and pieces encoded
// already.
func (p *picked) sotw() (anys []*anypb.Any, encoded [][]byte) {
	if p.allShared() {
		encoded = [][]byte{p.ts.shared.sotwEncoded()}
	} else {
		for _, i := range p.shared {
			anys = append(anys, p.ts.shared.anys[i])
		}
	}
	if p.whole {
		return anys, append(encoded, p.ts.own.sotwEncoded())
	}
	for _, i := range p.own {
		anys = append(anys, p.ts.own.anys[i])
	}
	return anys, encoded
}

// delta is sotw for delta responses.
func (p *picked) delta() (res []*discoveryv3.Resource, encoded [][]byte) {
	if p.allShared() {
		encoded = [][]byte{p.ts.shared.deltaEncoded()}
	} else {
		for _, i := range p.shared {
			res = append(res, p.ts.shared.deltaResource(i))
		}
	}
	if p.whole {
		return res, append(encoded, p.ts.own.deltaEncoded())
	}
	for _, i := range p.own {
		res = append(res, p.ts.own.deltaResource(i))
	}
	return res, encoded
}

// flushSotW sends a SotW response if the proxy lacks something of ts. CDS
// and LDS responses carry every subscribed resource; EDS, RDS and SDS
// responses only those the proxy lacks (as Istio does).
func (s *xdsStream) flushSotW(t *typeState, ts *typeSnapshot) error {
	if t.nacked != nil && ts.version == t.nacked.version {
		return nil
	}
	p := &picked{ts: ts}
	switch {
	case cache.ResourceRequiresFullStateInSotw(t.typeURL):
		if t.nacked == nil && t.held != nil && ts.version == t.held.version && t.sub.same(t.heldSub) {
			return nil
		}
		if t.sub.wildcard {
			p.whole = true
		} else {
			p.subscribed(t)
		}
		return s.sendSotWResponse(t, p)
	case t.nacked != nil:
		// After a NACK the next version goes in full, so the proxy's
		// answer says where it stands.
		p.subscribed(t)
	case t.held == nil:
		p.subscribed(t)
	case t.sub.same(t.heldSub):
		changed, _ := s.a.diffs.snapshots(t.held, ts)
		for _, n := range changed {
			if tr, i, ok := ts.find(n); ok && t.sub.has(n) {
				p.add(tr, i)
			}
		}
	default:
		t.eachSubscribed(ts, func(tr *typeResources, i int) {
			if t.lacks(tr.names[i], tr.vers[i]) {
				p.add(tr, i)
			}
		})
	}
	if p.len() == 0 {
		t.synced(ts)
		return nil
	}
	return s.sendSotWResponse(t, p)
}

// sendSotWResponse sends the picked resources.
func (s *xdsStream) sendSotWResponse(t *typeState, p *picked) error {
	anys, encoded := p.sotw()
	return s.respond(t, p.ts, p.len(), encoded, func(nonce string) proto.Message {
		return &discoveryv3.DiscoveryResponse{VersionInfo: p.ts.version, Resources: anys, TypeUrl: t.typeURL, Nonce: nonce}
	})
}

// flushDelta sends a delta response with what changed of the subscribed
// resources since the proxy's last ACK, and what was removed.
func (s *xdsStream) flushDelta(t *typeState, ts *typeSnapshot) error {
	if t.nacked != nil && ts.version == t.nacked.version && len(t.force) == 0 {
		return nil
	}
	p := &picked{ts: ts}
	if len(t.force) > 0 {
		p.seen = map[string]bool{}
	}
	var removed []string
	switch {
	case t.nacked != nil:
		// After a NACK the next version goes in full (see flushSotW).
		p.subscribed(t)
		removed = t.gone(ts)
	case t.held == nil && t.initial != nil:
		t.eachSubscribed(ts, func(tr *typeResources, i int) {
			if t.initial[tr.names[i]] != tr.vers[i] {
				p.add(tr, i)
			}
		})
		for n := range t.initial {
			if _, _, ok := ts.find(n); !ok && t.sub.has(n) {
				removed = append(removed, n)
			}
		}
	case t.held == nil && t.sub.wildcard && len(t.force) == 0:
		p.whole = true
	case t.held == nil:
		p.subscribed(t)
	case t.sub.same(t.heldSub):
		changed, gone := s.a.diffs.snapshots(t.held, ts)
		for _, n := range changed {
			if tr, i, ok := ts.find(n); ok && t.sub.has(n) {
				p.add(tr, i)
			}
		}
		for _, n := range gone {
			if t.sub.has(n) {
				removed = append(removed, n)
			}
		}
	default:
		t.eachSubscribed(ts, func(tr *typeResources, i int) {
			if t.lacks(tr.names[i], tr.vers[i]) {
				p.add(tr, i)
			}
		})
		removed = t.gone(ts)
	}
	for _, n := range t.force {
		if tr, i, ok := ts.find(n); ok && t.sub.has(n) {
			p.add(tr, i)
		}
	}
	t.force, t.initial = nil, nil
	answer := t.answer && t.sub.wildcard
	t.answer = false
	if p.len() == 0 && len(removed) == 0 && !answer {
		t.synced(ts)
		return nil
	}
	res, encoded := p.delta()
	return s.respond(t, ts, p.len(), encoded, func(nonce string) proto.Message {
		return &discoveryv3.DeltaDiscoveryResponse{
			SystemVersionInfo: ts.version, Resources: res, TypeUrl: t.typeURL, RemovedResources: removed, Nonce: nonce,
		}
	})
}

// gone returns the names the proxy holds and still subscribes to that ts
// no longer has.
func (t *typeState) gone(ts *typeSnapshot) []string {
	if t.held == nil {
		return nil
	}
	var out []string
	for _, tr := range t.held.parts() {
		for _, n := range tr.names {
			if _, _, ok := ts.find(n); !ok && t.heldSub.has(n) && t.sub.has(n) {
				out = append(out, n)
			}
		}
	}
	return out
}

// respond numbers a response of n resources of ts, marks it pending,
// records it and sends it: head (made with the nonce) encoded here, then
// the pieces encoded already.
func (s *xdsStream) respond(t *typeState, ts *typeSnapshot, n int, encoded [][]byte, head func(nonce string) proto.Message) error {
	s.nonce++
	nonce := strconv.FormatUint(s.nonce, 10)
	t.pending = &sentResponseState{nonce: nonce, ts: ts, sub: t.sub}
	t.lastNonce = nonce
	s.a.tracker.sent(s.nodeID, t.typeURL, ts.version, n)
	short := shortType(t.typeURL)
	s.a.metrics.pushes.WithLabelValues(short).Inc()
	s.a.metrics.resources.WithLabelValues(short).Add(float64(n))
	b, err := proto.Marshal(head(nonce))
	if err != nil {
		return status.Errorf(codes.Internal, "encode %s response: %v", short, err)
	}
	return s.send(&encodedMsg{parts: append([][]byte{b}, encoded...)})
}
