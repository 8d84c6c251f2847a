package server

import (
	"errors"
	"strconv"
	"sync"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// flush sends each type's response the proxy lacks, or returns the error
// a send from the waker failed with.
func (s *xdsStream) flush() error {
	if s.sendErr != nil {
		return s.sendErr
	}
	snap := s.c.snapshot()
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
		snap.types[i].firstDone()
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
	if t.sub.wildcard || t.sub.namespaces || t.sub.set == nil || t.sub.set.len() > ts.len() {
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

// coversShared reports whether the subscription covers every resource of
// ts's shared list.
func (t *typeState) coversShared(ts *typeSnapshot) bool {
	if t.sub.wildcard {
		return true
	}
	if t.sub.set == nil || !t.sub.namespaces && t.sub.set.len() < len(ts.shared.names) {
		return false
	}
	for _, n := range ts.shared.names {
		if !t.sub.has(n) {
			return false
		}
	}
	return true
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

// pickChanges picks what the proxy lacks of ts since what it holds and,
// for delta, the names it holds that ts no longer has (SotW responses do
// not name those). It is the part SotW and delta share.
func (t *typeState) pickChanges(s *xdsStream, p *picked) (removed []string) {
	ts := p.ts
	switch {
	case t.nacked != nil:
		// After a NACK the next version goes in full, so the proxy's
		// answer says where it stands.
		p.subscribed(t)
		if s.delta {
			removed = t.gone(ts)
		}
		return removed
	case t.held == nil:
		p.subscribed(t)
		return nil
	case t.sub.same(t.heldSub):
		changed, gone := s.a.diffs.snapshots(t.held, ts)
		t.pickNamed(p, changed, false)
		for _, n := range gone {
			if s.delta && t.sub.has(n) {
				removed = append(removed, n)
			}
		}
		return removed
	case t.namesAddedForced(s):
		// The proxy holds held's content of what both subscriptions
		// name, and the names added since are in force (sent by the
		// caller): the shared diff tells the rest, without walking the
		// whole subscription (a new service's endpoints, subscribed by a
		// thousand sidecars, would otherwise cost each a walk of them all).
		changed, gone := s.a.diffs.snapshots(t.held, ts)
		t.pickNamed(p, changed, false)
		for _, n := range gone {
			if t.sub.has(n) && t.heldSub.has(n) {
				removed = append(removed, n)
			}
		}
		return removed
	case !s.delta && t.namesOnly():
		// SotW, names added or dropped: the proxy holds held's content
		// of the names both subscriptions have, and none of those added
		// (a name dropped and asked for again was dropped by the proxy
		// too). The shared diff and the sets' difference tell what it
		// lacks, without walking the whole subscription.
		changed, _ := s.a.diffs.snapshots(t.held, ts)
		t.pickNamed(p, changed, true)
		t.pickNamed(p, s.a.diffs.addedNames(t.heldSub.set, t.sub.set), false)
		return nil
	}
	t.eachSubscribed(ts, func(tr *typeResources, i int) {
		if t.lacks(tr.names[i], tr.vers[i]) {
			p.add(tr, i)
		}
	})
	if s.delta {
		removed = t.gone(ts)
	}
	return removed
}

// pickNamed picks the resources of p.ts named in names that the
// subscription covers; with kept, only those heldSub covered too.
func (t *typeState) pickNamed(p *picked, names []string, kept bool) {
	for _, n := range names {
		if tr, i, ok := p.ts.find(n); ok && t.sub.has(n) && (!kept || t.heldSub.has(n)) {
			p.add(tr, i)
		}
	}
}

// namesOnly reports whether the subscription and heldSub both name their
// resources, and nothing else: no wildcard, no VHDS namespaces.
func (t *typeState) namesOnly() bool {
	return !t.sub.wildcard && !t.heldSub.wildcard && !t.sub.namespaces && !t.heldSub.namespaces &&
		t.sub.set != nil && t.heldSub.set != nil
}

// namesAddedForced reports whether every name the subscription covers now
// and heldSub did not is in force, so what the proxy lacks is the diff from
// held (for names in both) plus force. It holds on a delta stream for
// explicit names: handleDelta puts each name subscribed after the first
// request in force. It does not when the subscription became a wildcard,
// or for VHDS, whose names stand for every virtual host under them.
func (t *typeState) namesAddedForced(s *xdsStream) bool {
	return s.delta && !t.sub.namespaces && !t.heldSub.namespaces && (!t.sub.wildcard || t.heldSub.wildcard)
}

// flushSotW sends a SotW response if the proxy lacks something of ts. CDS
// and LDS responses carry every subscribed resource; EDS, RDS and SDS
// responses only those the proxy lacks (as Istio does).
func (s *xdsStream) flushSotW(t *typeState, ts *typeSnapshot) error {
	if t.nacked != nil && ts.version == t.nacked.version {
		return nil
	}
	if t.presented != "" && s.resume(t, ts) {
		return nil
	}
	p := &picked{ts: ts}
	if cache.ResourceRequiresFullStateInSotw(t.typeURL()) {
		if t.nacked == nil && t.held != nil && ts.version == t.held.version && t.sub.same(t.heldSub) {
			return nil
		}
		if t.sub.wildcard {
			p.whole = true
		} else {
			p.subscribed(t)
		}
		return s.sendSotW(t, p)
	}
	t.pickChanges(s, p)
	if p.len() == 0 {
		t.synced(ts)
		return nil
	}
	return s.sendSotW(t, p)
}

// sendSotW sends the picked resources.
func (s *xdsStream) sendSotW(t *typeState, p *picked) error {
	anys, encoded := p.sotw()
	return s.respond(t, p.ts, p.len(), encoded, responseHead{version: t.wireVersion(p.ts), anys: anys})
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
	case t.nacked == nil && t.held == nil && t.initial != nil:
		removed = t.pickInitial(p)
	case t.nacked == nil && t.held == nil && t.sub.wildcard && len(t.force) == 0:
		p.whole = true
	default:
		removed = t.pickChanges(s, p)
	}
	for _, n := range t.force {
		if tr, i, ok := ts.find(n); ok && t.sub.has(n) {
			p.add(tr, i)
		}
	}
	t.force, t.initial = nil, nil
	answer := t.answer && (t.sub.wildcard || t.sub.namespaces) // Envoy's VHDS waits for a first answer
	t.answer = false
	if p.len() == 0 && len(removed) == 0 && !answer {
		t.synced(ts)
		return nil
	}
	res, encoded := p.delta()
	return s.respond(t, ts, p.len(), encoded, responseHead{version: ts.version, res: res, removed: removed})
}

// pickInitial picks, for a delta stream's first response, what differs
// from the versions its first request said it holds, and returns the held
// names that are gone.
func (t *typeState) pickInitial(p *picked) (removed []string) {
	t.eachSubscribed(p.ts, func(tr *typeResources, i int) {
		if t.initial[tr.names[i]] != tr.vers[i] {
			p.add(tr, i)
		}
	})
	for n := range t.initial {
		if _, _, ok := p.ts.find(n); !ok && t.sub.has(n) {
			removed = append(removed, n)
		}
	}
	return removed
}

// responseHead is what a response holds besides its pieces encoded
// already: its version, the resources encoded with it, and (delta) the
// names removed.
type responseHead struct {
	version string
	anys    []*anypb.Any            // SotW
	res     []*discoveryv3.Resource // delta
	removed []string                // delta
}

// encode encodes h as the head of a response of t's type with nonce, in a
// message from the ads' pool: a push makes one per proxy, each garbage
// once encoded.
func (h responseHead) encode(a *ads, delta bool, t *typeState, nonce string) ([]byte, error) {
	if delta {
		return marshalPooled(&a.deltaHeads, func(m *discoveryv3.DeltaDiscoveryResponse) {
			m.SystemVersionInfo, m.Resources, m.TypeUrl, m.RemovedResources, m.Nonce = h.version, h.res, t.typeURL(), h.removed, nonce
		})
	}
	return marshalPooled(&a.sotwHeads, func(m *discoveryv3.DiscoveryResponse) {
		m.VersionInfo, m.Resources, m.TypeUrl, m.Nonce = h.version, h.anys, t.typeURL(), nonce
	})
}

// marshalPooled encodes a message of pool, filled by fill, and gives it
// back to the pool cleared.
func marshalPooled[M interface {
	proto.Message
	Reset()
}](pool *sync.Pool, fill func(M)) ([]byte, error) {
	m := pool.Get().(M)
	fill(m)
	b, err := proto.Marshal(m)
	m.Reset()
	pool.Put(m)
	return b, err
}

// respond numbers a response of n resources of ts, marks it pending,
// records it and sends it: head (with the nonce) encoded here, then the
// pieces encoded already.
func (s *xdsStream) respond(t *typeState, ts *typeSnapshot, n int, encoded [][]byte, head responseHead) error {
	nonce := strconv.FormatUint(s.nonce+1, 10)
	short := shortTypes[t.index]
	b, err := head.encode(s.a, s.delta, t, nonce)
	if err != nil {
		return status.Errorf(codes.Internal, "encode %s response: %v", short, err)
	}
	if s.inline {
		size := len(b)
		for _, e := range encoded {
			size += len(e)
		}
		if size > s.budget {
			return errOverBudget
		}
		s.budget -= size
	}
	// Made: the own list's first encodings are spent, and not kept while
	// the response waits for the proxy to read it.
	ts.firstDone()
	s.nonce++
	t.pending = &sentResponse{nonce: nonce, ts: ts, sub: t.sub}
	t.lastNonce = nonce
	s.c.sent(int(t.index), ts.version)
	s.a.metrics.pushesOf[t.index].Inc()
	s.a.metrics.resourcesOf[t.index].Add(float64(n))
	err = s.send(&encodedMsg{head: b, parts: encoded})
	if err != nil && s.inline {
		s.sendErr = err // for serve to end the stream with
	}
	return err
}

// errOverBudget is respond's answer, having changed nothing, when a push
// sent from the waker (see pushInline) would send more than its budget.
var errOverBudget = errors.New("response over the inline budget")

// inlineBudget is the most a push sent from the waker sends on a stream:
// under gRPC's write quota of a stream (64 KB), so that with nothing of the
// stream's unanswered (its bytes all read), the send cannot block.
const inlineBudget = 32 << 10

// pushInline sends, on the calling goroutine (the waker's), what a new
// snapshot brings a stream that is steady: idle, every response answered,
// nothing forced, held back or resumed. It reports false, having sent
// nothing or only part, when the stream's own goroutine must flush
// instead (or finish: a send failed).
//
// Woken, a stream's goroutine starts a goroutine to flush on (see
// onOwnStack) and waits for it: two goroutine switches and a goroutine per
// stream per push, where most pushes to a steady stream are one small
// response.
func (s *xdsStream) pushInline() bool {
	if !s.mu.TryLock() {
		return false
	}
	defer s.mu.Unlock()
	if s.ended || s.queued > 0 || s.c == nil || s.sendErr != nil {
		return false
	}
	for _, t := range s.types {
		if t != nil && !t.steady() {
			return false
		}
	}
	s.inline, s.budget = true, inlineBudget
	err := s.flush()
	s.inline = false
	return err == nil
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

// sotw returns the picked resources of the proxy's own list as Anys to
// encode, and the shared ones as pieces encoded already (the whole list, or
// each resource as a field; see sotwField).
func (p *picked) sotw() (anys []*anypb.Any, encoded [][]byte) {
	if p.allShared() {
		encoded = [][]byte{p.ts.shared.sotwEncoded()}
	} else {
		for _, i := range p.shared {
			encoded = append(encoded, p.ts.shared.sotwField(i))
		}
	}
	if p.whole {
		return anys, append(encoded, p.ts.own.sotwEncoding())
	}
	if len(p.own) > 0 {
		anys = p.ts.own.ownAnys(p.own)
	}
	return anys, encoded
}

// delta is sotw for delta responses.
func (p *picked) delta() (res []*discoveryv3.Resource, encoded [][]byte) {
	if p.allShared() {
		encoded = [][]byte{p.ts.shared.deltaEncoded()}
	} else {
		for _, i := range p.shared {
			encoded = append(encoded, p.ts.shared.deltaField(i))
		}
	}
	if p.whole {
		return res, append(encoded, p.ts.own.deltaEncoding())
	}
	if len(p.own) > 0 {
		res = p.ts.own.ownDeltaResources(p.own)
	}
	return res, encoded
}
