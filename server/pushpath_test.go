package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/librarymesh/controlplane/snapshot"
)

// TestUpdateRemembersDerivedSets: streams making the same small change to
// a shared set get the same set, equal to the one made from scratch, and a
// different change gets its own.
func TestUpdateRemembersDerivedSets(t *testing.T) {
	in := newInterner()
	base := in.of([]string{"a", "b", "c"})
	first := in.update(base, []string{"d"}, nil)
	if again := in.update(base, []string{"d"}, nil); again != first {
		t.Error("the same change to the same set gave another set")
	}
	if of := in.of([]string{"a", "b", "c", "d"}); of != first {
		t.Error("update to {a b c d} gave another set than of({a b c d})")
	}
	for _, tc := range []struct {
		adds, removes []string
		want          []string
	}{
		{adds: []string{"e"}, want: []string{"a", "b", "c", "e"}},
		{removes: []string{"d"}, want: []string{"a", "b", "c"}},
		{adds: []string{"d"}, removes: []string{"a"}, want: []string{"b", "c", "d"}},
		{adds: []string{"1:d"}, want: []string{"a", "b", "c", "1:d"}}, // not taken for another change
		{adds: []string{"d", "x"}, removes: []string{"x"}, want: []string{"a", "b", "c", "d"}},
	} {
		for range 2 { // made, then remembered
			got := in.update(base, tc.adds, tc.removes)
			if !got.holdsExactly(tc.want) {
				t.Errorf("update(+%v -%v) = %v, want %v", tc.adds, tc.removes, got.list, tc.want)
			}
		}
	}
}

// pickFixture is the endpoints a proxy holds (held) and those it would be
// sent now (cur): a and c changed, b and x did not, gone went, d and e came.
func pickFixture(t *testing.T) (a *ads, held, cur *typeSnapshot) {
	t.Helper()
	cla := func(name string, weight uint32) types.Resource {
		return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{
			{LoadBalancingWeight: wrapperspb.UInt32(weight)},
		}}
	}
	h := newHasher()
	ts := func(list ...types.Resource) *typeSnapshot {
		tr, err := h.list(list)
		if err != nil {
			t.Fatal(err)
		}
		s, err := h.pair(tr, emptyType)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	held = ts(cla("a", 1), cla("b", 1), cla("c", 1), cla("gone", 1), cla("x", 1))
	cur = ts(cla("a", 2), cla("b", 1), cla("c", 2), cla("d", 1), cla("e", 1), cla("x", 1))
	m, err := newMetrics(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return newADS(slog.New(slog.DiscardHandler), m, func(float64) {}), held, cur
}

// TestDeltaPicksAfterSubscriptionChange: after a delta stream's
// subscription changed, it is sent what changed of the names it kept, the
// names it added whatever it holds, and nothing of the names it dropped;
// a subscription that became a wildcard gets everything it lacks.
func TestDeltaPicksAfterSubscriptionChange(t *testing.T) {
	a, held, cur := pickFixture(t)
	// x is in both but not subscribed to.
	heldSet := a.subs.of([]string{"a", "b", "c", "gone"})
	for _, tc := range []struct {
		name                   string
		wildcard               bool // held as a wildcard subscription
		subscribe, unsubscribe []string
		wantSent, wantRemoved  []string
	}{
		{name: "added a name", subscribe: []string{"d"}, wantSent: []string{"a", "c", "d"}, wantRemoved: []string{"gone"}},
		{name: "dropped a changed name", unsubscribe: []string{"c"}, wantSent: []string{"a"}, wantRemoved: []string{"gone"}},
		{name: "dropped the gone name", unsubscribe: []string{"gone"}, wantSent: []string{"a", "c"}},
		{name: "re-added a held name", subscribe: []string{"b"}, wantSent: []string{"a", "b", "c"}, wantRemoved: []string{"gone"}},
		{name: "became a wildcard", subscribe: []string{"*"}, wantSent: []string{"a", "c", "d", "e", "x"}, wantRemoved: []string{"gone"}},
		{name: "wildcard added a name", wildcard: true, subscribe: []string{"d"}, wantSent: []string{"a", "c", "d", "e"}, wantRemoved: []string{"gone"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := a.newConn(&snapshot.Proxy{ID: "sidecar~10.0.0.1~app.default~default.svc.cluster.local"}, nil, true, nil)
			c.snap = &nodeSnapshot{}
			s := &xdsStream{a: a, delta: true, c: c, send: func(any) error { return nil }}
			sub := subscription{set: heldSet, wildcard: tc.wildcard}
			st := &typeState{index: int32(typeIndex(resourcev3.EndpointType)), requested: true, sub: sub, held: held, heldSub: sub}
			s.handleDelta(st, &request{typeURL: resourcev3.EndpointType, subscribe: tc.subscribe, unsubscribe: tc.unsubscribe})
			p := &picked{ts: cur}
			if len(st.force) > 0 {
				p.seen = map[string]bool{}
			}
			removed := st.pickChanges(s, p)
			for _, n := range st.force {
				if tr, i, ok := cur.find(n); ok && st.sub.has(n) {
					p.add(tr, i)
				}
			}
			var got []string
			for _, i := range p.shared {
				got = append(got, cur.shared.names[i])
			}
			if p.sharedAll || p.whole {
				got = slices.Clone(cur.shared.names)
			}
			slices.Sort(got)
			slices.Sort(removed)
			if !slices.Equal(got, tc.wantSent) || !slices.Equal(removed, tc.wantRemoved) {
				t.Errorf("sent %v, removed %v; want sent %v, removed %v", got, removed, tc.wantSent, tc.wantRemoved)
			}
		})
	}
}

// TestSotWPicksAfterSubscriptionChange: a SotW stream whose EDS request
// names other resources than the proxy holds is sent what it lacks: the
// changed content of names it kept, and the names it added (even unchanged
// ones it held before it dropped them), but nothing it holds.
func TestSotWPicksAfterSubscriptionChange(t *testing.T) {
	a, held, cur := pickFixture(t)
	for _, tc := range []struct {
		name         string
		held, now    []string // the names subscribed when held was ACKed, and now
		wantSent     []string
		heldWildcard bool
	}{
		{name: "added a name", held: []string{"a", "b", "c", "gone"}, now: []string{"a", "b", "c", "gone", "d"}, wantSent: []string{"a", "c", "d"}},
		{name: "added a name not there", held: []string{"a", "b"}, now: []string{"a", "b", "nowhere"}, wantSent: []string{"a"}},
		{name: "dropped a changed name", held: []string{"a", "b", "c"}, now: []string{"a", "b"}, wantSent: []string{"a"}},
		{name: "re-added an unchanged name", held: []string{"a", "c"}, now: []string{"a", "b", "c"}, wantSent: []string{"a", "b", "c"}},
		{name: "named what it held, unchanged", held: []string{"b", "gone"}, now: []string{"b", "x"}, wantSent: []string{"x"}},
		{name: "from a wildcard", heldWildcard: true, now: []string{"b", "d"}, wantSent: []string{"d"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := a.newConn(&snapshot.Proxy{ID: "sidecar~10.0.0.1~app.default~default.svc.cluster.local"}, nil, false, nil)
			c.snap = &nodeSnapshot{}
			s := &xdsStream{a: a, c: c, send: func(any) error { return nil }}
			heldSub := subscription{wildcard: tc.heldWildcard}
			if !tc.heldWildcard {
				heldSub.set = a.subs.of(tc.held)
			}
			st := &typeState{index: int32(typeIndex(resourcev3.EndpointType)), requested: true, sub: heldSub, held: held, heldSub: heldSub}
			s.handleSotW(st, &request{typeURL: resourcev3.EndpointType, names: tc.now})
			p := &picked{ts: cur}
			st.pickChanges(s, p)
			var got []string
			for _, i := range p.shared {
				got = append(got, cur.shared.names[i])
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.wantSent) || p.sharedAll || p.whole {
				t.Errorf("sent %v (all: %v); want %v", got, p.sharedAll || p.whole, tc.wantSent)
			}
		})
	}
}

// FuzzSotWPick checks the SotW pick after a subscription change against
// its definition: of the names subscribed now that exist, those the proxy
// did not subscribe to when it ACKed held, or whose content changed since.
// Each byte pair of the input is a name's place in the held and the new
// subscription.
func FuzzSotWPick(f *testing.F) {
	f.Add([]byte{1, 1, 1, 1, 1, 1, 1, 0, 0, 1})
	f.Add([]byte{1, 0, 0, 1, 1, 1, 0, 1})
	f.Add([]byte{})
	universe := []string{"a", "b", "c", "d", "e", "gone", "x", "nowhere"}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, held, cur := pickFixture(t)
		var was, now []string
		for i := 0; i+1 < len(b) && i/2 < len(universe); i += 2 {
			if b[i]&1 == 1 {
				was = append(was, universe[i/2])
			}
			if b[i+1]&1 == 1 {
				now = append(now, universe[i/2])
			}
		}
		if len(was) == 0 || len(now) == 0 {
			return // a subscription of no names is a wildcard in SotW
		}
		c := a.newConn(&snapshot.Proxy{ID: "sidecar~10.0.0.1~app.default~default.svc.cluster.local"}, nil, false, nil)
		s := &xdsStream{a: a, c: c, send: func(any) error { return nil }}
		heldSub := subscription{set: a.subs.of(was)}
		st := &typeState{index: int32(typeIndex(resourcev3.EndpointType)), requested: true, sub: heldSub, held: held, heldSub: heldSub}
		s.handleSotW(st, &request{typeURL: resourcev3.EndpointType, names: now})
		p := &picked{ts: cur}
		st.pickChanges(s, p)
		var got, want []string
		for _, i := range p.shared {
			got = append(got, cur.shared.names[i])
		}
		for _, n := range now {
			v, ok := cur.versionOf(n)
			if !ok {
				continue
			}
			if hv, held := held.versionOf(n); !slices.Contains(was, n) || !held || hv != v {
				want = append(want, n)
			}
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) || p.sharedAll || p.whole {
			t.Fatalf("held %v, now %v: sent %v (all: %v), want %v", was, now, got, p.sharedAll || p.whole, want)
		}
	})
}

// TestAddedNamesBounded: pairs of sets made from requests, each naming
// other resources, do not pile up in the diff cache between pushes, and
// what it answers is the names added.
func TestAddedNamesBounded(t *testing.T) {
	a, _, _ := pickFixture(t)
	from := a.subs.of([]string{"a", "b"})
	var keep []*nameSet // the interner holds sets weakly
	for i := range 4 * maxAddedPairs {
		to := a.subs.of([]string{"a", "b", fmt.Sprint("n", i)})
		keep = append(keep, to)
		if got := a.diffs.addedNames(from, to); !slices.Equal(got, []string{fmt.Sprint("n", i)}) {
			t.Fatalf("added from %v to %v: %v", from.list, to.list, got)
		}
	}
	if n := len(a.diffs.added.cur) + len(a.diffs.added.prev); n > 2*maxAddedPairs {
		t.Errorf("%d pairs kept after %d requests; want at most %d", n, len(keep), 2*maxAddedPairs)
	}
}

// TestRecentSamplesDropOld: samples older than the window are not counted,
// and a bound reached many times over keeps the newest.
func TestRecentSamplesDropOld(t *testing.T) {
	r := newRecentSamples(50*time.Millisecond, 1000)
	for range 10 {
		r.add(1)
	}
	time.Sleep(100 * time.Millisecond)
	r.add(0.5)
	if got := r.summary(time.Second).All; got.Count != 1 || got.P99 != 0.5 {
		t.Errorf("after the window: count %d p99 %v, want only the newest (1, 0.5)", got.Count, got.P99)
	}
	r = newRecentSamples(time.Minute, 10)
	for i := range 1000 {
		r.add(float64(i))
	}
	if got := r.summary(time.Minute).All; got.Count != 10 || got.P50 != 994 || got.P99 != 998 {
		t.Errorf("1000 samples into 10: count %d p50 %v p99 %v, want 10, 994, 998", got.Count, got.P50, got.P99)
	}
	if n := cap(r.ring); n > 10 {
		t.Errorf("room for %d samples kept, want at most the bound (10)", n)
	}
}

// TestHasherSharesEqualContent: two proxies whose own parts are equal but
// built separately (a service's replicas) share one list; a proxy whose own
// part differs shares nothing of it. Own lists keep no encodings: each is
// made again when sent, the same bytes the version was hashed from.
func TestHasherSharesEqualContent(t *testing.T) {
	cla := func(name string, weight uint32) *endpointv3.ClusterLoadAssignment {
		return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{
			{LoadBalancingWeight: wrapperspb.UInt32(weight)},
		}}
	}
	own := func(weight uint32) *snapshot.Resources {
		return &snapshot.Resources{Endpoints: []types.Resource{cla("inbound|8080||a", weight), cla("inbound|9090||a", 1)}}
	}
	shared := &snapshot.Resources{Endpoints: []types.Resource{cla("outbound|8080||b", 1)}}
	h := newHasher()
	eds := typeIndex(resourcev3.EndpointType)
	snaps := make([]*nodeSnapshot, 3)
	for i, w := range []uint32{1, 1, 2} {
		s, err := newNodeSnapshot(h, shared, own(w), built{})
		if err != nil {
			t.Fatal(err)
		}
		snaps[i] = s
	}
	a, b, c := snaps[0].types[eds], snaps[1].types[eds], snaps[2].types[eds]
	if a.own != b.own || a != b {
		t.Error("replicas with equal own parts got a list each")
	}
	if a.own == c.own || a.version == c.version {
		t.Fatal("a different own part was taken for the same")
	}
	if a.own.anys != nil || c.own.anys != nil {
		t.Error("own lists keep their encodings")
	}
	if a.own.vers[1] != c.own.vers[1] {
		t.Error("equal resources in different lists have different versions")
	}
	if c.own.vers[0] == a.own.vers[0] {
		t.Error("different resources have one version")
	}
	for _, tr := range []*typeResources{a.own, c.own} {
		for i := range tr.names {
			sum := sha256.Sum256(tr.anyAt(i).GetValue())
			if v := hex.EncodeToString(sum[:8]); v != tr.vers[i] {
				t.Errorf("%s is sent as bytes of version %s, its version is %s", tr.names[i], v, tr.vers[i])
			}
		}
	}
	if got := c.resources()["inbound|8080||a"].(*endpointv3.ClusterLoadAssignment).GetEndpoints()[0].GetLoadBalancingWeight().GetValue(); got != 2 {
		t.Errorf("the third proxy's own resource has weight %d, want 2", got)
	}
}

// TestWholeOwnListNotKept: a response with every resource of a type sends
// the shared list's encoding, made once and kept for the other proxies,
// and the proxy's own list encoded for this response only: it is not kept
// with the list (per-proxy memory). What is sent decodes to every resource.
func TestWholeOwnListNotKept(t *testing.T) {
	cla := func(name string) types.Resource { return &endpointv3.ClusterLoadAssignment{ClusterName: name} }
	h := newHasher()
	shared, err := h.list([]types.Resource{cla("s1"), cla("s2")})
	if err != nil {
		t.Fatal(err)
	}
	own, err := h.ownList([]types.Resource{cla("own")})
	if err != nil {
		t.Fatal(err)
	}
	ts, err := h.pair(shared, own)
	if err != nil {
		t.Fatal(err)
	}
	p := &picked{ts: ts, whole: true}
	_, sotw := p.sotw()
	_, delta := p.delta()
	ts.firstDone() // as the flush does
	if m := own.made.Load(); m != nil && (m.sotwEnc != nil || m.deltaEnc != nil) || own.anys != nil || own.first.Load() != nil {
		t.Errorf("the own list keeps its encodings (%+v, %d resources, first %v)", m, len(own.anys), own.first.Load())
	}
	if m := shared.made.Load(); m == nil || m.sotwEnc == nil || m.deltaEnc == nil {
		t.Error("the shared list's encodings are not kept")
	}
	var sresp discoveryv3.DiscoveryResponse
	if err := proto.Unmarshal(bytes.Join(sotw, nil), &sresp); err != nil || len(sresp.GetResources()) != 3 {
		t.Errorf("SotW: %d resources, %v; want 3", len(sresp.GetResources()), err)
	}
	var dresp discoveryv3.DeltaDiscoveryResponse
	if err := proto.Unmarshal(bytes.Join(delta, nil), &dresp); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range dresp.GetResources() {
		names = append(names, r.GetName())
		if r.GetVersion() == "" || r.GetResource() == nil {
			t.Errorf("delta resource %q without version or content", r.GetName())
		}
	}
	if !slices.Equal(names, []string{"s1", "s2", "own"}) {
		t.Errorf("delta sent %v, want [s1 s2 own]", names)
	}
}

// TestSharedResourceEncodedOnceAlone: a resource of a shared list sent
// without the rest (an endpoint change's one ClusterLoadAssignment) is
// encoded once, and every stream sends those bytes; what is sent decodes to
// the picked resources with their versions and content.
func TestSharedResourceEncodedOnceAlone(t *testing.T) {
	cla := func(name string, port uint32) types.Resource {
		return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{snapshot.LbEndpoint("10.0.0.1", port, 1)},
		}}}
	}
	h := newHasher()
	shared, err := h.list([]types.Resource{cla("s1", 1), cla("s2", 2), cla("s3", 3)})
	if err != nil {
		t.Fatal(err)
	}
	own, err := h.ownList([]types.Resource{cla("own", 4)})
	if err != nil {
		t.Fatal(err)
	}
	ts, err := h.pair(shared, own)
	if err != nil {
		t.Fatal(err)
	}
	pick := func() *picked { return &picked{ts: ts, shared: []int{1}, own: []int{0}} }
	built := func(name string) types.Resource {
		tr, i, ok := ts.find(name)
		if !ok {
			t.Fatalf("no %s in the snapshot", name)
		}
		return tr.list[i]
	}

	anys, sotw1 := pick().sotw()
	_, sotw2 := pick().sotw()
	if len(sotw1) != 1 || &sotw1[0][0] != &sotw2[0][0] {
		t.Fatalf("two streams got %d and %d pieces, not the same bytes", len(sotw1), len(sotw2))
	}
	head, err := proto.Marshal(&discoveryv3.DiscoveryResponse{Resources: anys, Nonce: "1"})
	if err != nil {
		t.Fatal(err)
	}
	var sresp discoveryv3.DiscoveryResponse
	if err := proto.Unmarshal(append(head, sotw1[0]...), &sresp); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range sresp.GetResources() {
		var c endpointv3.ClusterLoadAssignment
		if err := a.UnmarshalTo(&c); err != nil {
			t.Fatal(err)
		}
		got = append(got, c.GetClusterName())
		if want := built(c.GetClusterName()); !proto.Equal(&c, want) {
			t.Errorf("SotW sent %v for %s, want %v", &c, c.GetClusterName(), want)
		}
	}
	if !slices.Equal(got, []string{"own", "s2"}) || sresp.GetNonce() != "1" {
		t.Errorf("SotW sent %v (nonce %q), want [own s2] (nonce 1)", got, sresp.GetNonce())
	}

	res, delta1 := pick().delta()
	_, delta2 := pick().delta()
	if len(delta1) != 1 || &delta1[0][0] != &delta2[0][0] {
		t.Fatalf("two delta streams got %d and %d pieces, not the same bytes", len(delta1), len(delta2))
	}
	head, err = proto.Marshal(&discoveryv3.DeltaDiscoveryResponse{Resources: res, Nonce: "2"})
	if err != nil {
		t.Fatal(err)
	}
	var dresp discoveryv3.DeltaDiscoveryResponse
	if err := proto.Unmarshal(append(head, delta1[0]...), &dresp); err != nil {
		t.Fatal(err)
	}
	got = nil
	for _, r := range dresp.GetResources() {
		got = append(got, r.GetName())
		tr, i, ok := ts.find(r.GetName())
		if !ok || r.GetVersion() != tr.vers[i] {
			t.Errorf("delta sent %s at version %q, want %q", r.GetName(), r.GetVersion(), tr.vers[i])
		}
		var c endpointv3.ClusterLoadAssignment
		if err := r.GetResource().UnmarshalTo(&c); err != nil || !proto.Equal(&c, built(r.GetName())) {
			t.Errorf("delta sent %v for %s (%v)", &c, r.GetName(), err)
		}
	}
	if !slices.Equal(got, []string{"own", "s2"}) || dresp.GetNonce() != "2" {
		t.Errorf("delta sent %v (nonce %q), want [own s2] (nonce 2)", got, dresp.GetNonce())
	}
}

// TestRebuildKeepsUnchangedTypes: after endpoint changes a proxy keeps the
// typeSnapshots of the types that did not change (the same ones, not
// looked up again) and gets new ones for EDS; its snapshot is the one a
// fresh build gives. A proxy connecting after several such changes is given
// the very lists the others hold, not a second versioning of them.
func TestRebuildKeepsUnchangedTypes(t *testing.T) {
	const services = 20
	store := meshStore(t, services)
	s, err := New(Config{GRPCAddr: "127.0.0.1:0", Registry: store})
	if err != nil {
		t.Fatal(err)
	}
	connect := func(i int) *conn {
		t.Helper()
		n := node(fmt.Sprintf("sidecar~10.10.%d.%d~pod-%d.default~default.svc.cluster.local", i/250, i%250, i))
		px, err := snapshot.ParseProxy(n)
		if err != nil {
			t.Fatal(err)
		}
		c := s.ads.newConn(px, nil, false, nil)
		s.pusher.connect(c)
		return c
	}
	conns := []*conn{connect(0), connect(1), connect(2)}
	eds := typeIndex(resourcev3.EndpointType)
	for gen := 1; gen <= 5; gen++ { // more rotations than the caches keep unused entries
		before := make([]*nodeSnapshot, len(conns))
		for i, c := range conns {
			before[i] = c.snapshot()
		}
		store.Upsert("test", endpointSlice("svc-7", 7, gen%2+1))
		if _, changed := s.pusher.rebuild(time.Now()); changed != len(conns) {
			t.Fatalf("change %d: %d of %d proxies got a new snapshot", gen, changed, len(conns))
		}
		for i, c := range conns {
			after := c.snapshot()
			for ti := range after.types {
				kept := after.types[ti] == before[i].types[ti]
				if ti == eds && kept {
					t.Errorf("change %d, proxy %d: EDS kept its typeSnapshot", gen, i)
				}
				if ti != eds && !kept {
					t.Errorf("change %d, proxy %d: %s changed (version %s -> %s)", gen, i, shortTypes[ti], before[i].types[ti].version, after.types[ti].version)
				}
			}
			// What a build from scratch gives.
			_, shared, own, err := buildKindParts(s.pusher.builder, c.proxy)
			if err != nil {
				t.Fatal(err)
			}
			fresh, err := newNodeSnapshot(newHasher(), shared, own, built{})
			if err != nil {
				t.Fatal(err)
			}
			for ti := range fresh.types {
				if got, want := after.types[ti].version, fresh.types[ti].version; got != want {
					t.Errorf("change %d, proxy %d: %s version %s, a fresh build gives %s", gen, i, shortTypes[ti], got, want)
				}
			}
		}
	}
	late := connect(3)
	for ti, ts := range late.snapshot().types {
		if len(ts.shared.names) > 0 && ts.shared != conns[0].snapshot().types[ti].shared {
			t.Errorf("%s: the proxy connecting late got its own versioning of the shared list", shortTypes[ti])
		}
	}
}

// TestDiffOfSameListsIsEmpty: two typeSnapshots of the same two lists (a
// proxy that kept its own while the pair left the cache, and a proxy given
// it again later) differ in nothing.
func TestDiffOfSameListsIsEmpty(t *testing.T) {
	h := newHasher()
	shared, err := h.list([]types.Resource{&endpointv3.ClusterLoadAssignment{ClusterName: "outbound|80||a.default.svc.cluster.local"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, own := range []*typeResources{emptyType, mustOwnList(t, h, "inbound|80||")} {
		a, err := newTypeSnapshot(shared, own)
		if err != nil {
			t.Fatal(err)
		}
		b, err := newTypeSnapshot(shared, own)
		if err != nil {
			t.Fatal(err)
		}
		if changed, removed := newDiffCache().snapshots(a, b); len(changed)+len(removed) > 0 {
			t.Errorf("own %v: changed %v, removed %v; want nothing", own.names, changed, removed)
		}
	}
}

func mustOwnList(t *testing.T, h *hasher, names ...string) *typeResources {
	t.Helper()
	var list []types.Resource
	for _, n := range names {
		list = append(list, &endpointv3.ClusterLoadAssignment{ClusterName: n})
	}
	tr, err := h.ownList(list)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// TestAnyTypeURL: the type URL of a served type, and of any other message.
func TestAnyTypeURL(t *testing.T) {
	for _, tc := range []struct {
		r    types.Resource
		want string
	}{
		{&clusterv3.Cluster{}, resourcev3.ClusterType},
		{&endpointv3.ClusterLoadAssignment{}, resourcev3.EndpointType},
		{&routev3.VirtualHost{}, resourcev3.VirtualHostType},
		{&corev3.Node{}, "type.googleapis.com/envoy.config.core.v3.Node"},
	} {
		if got := anyTypeURL(tc.r); got != tc.want {
			t.Errorf("anyTypeURL(%T) = %q, want %q", tc.r, got, tc.want)
		}
	}
}

// TestLookup: a list finds each of its names at its index and no other
// name, whether short (searched name by name) or long (indexed).
func TestLookup(t *testing.T) {
	for _, n := range []int{1, shortList, shortList + 1, 40} {
		list := make([]types.Resource, n)
		for i := range list {
			list[i] = &endpointv3.ClusterLoadAssignment{ClusterName: fmt.Sprintf("outbound|%d||svc.default.svc.cluster.local", 1000+i)}
		}
		tr, err := newHasher().list(list)
		if err != nil {
			t.Fatal(err)
		}
		for i, name := range tr.names {
			if j, ok := tr.lookup(name); !ok || j != i {
				t.Errorf("%d names: lookup(%q) = %d, %v; want %d", n, name, j, ok, i)
			}
		}
		if j, ok := tr.lookup("outbound|1||other.default.svc.cluster.local"); ok {
			t.Errorf("%d names: an absent name found at %d", n, j)
		}
		if indexed := tr.made.Load() != nil && tr.made.Load().index != nil; indexed != (n > shortList) {
			t.Errorf("%d names: indexed %v, want %v", n, indexed, n > shortList)
		}
	}
}

// TestOwnListSentFromItsHashing: an own list's first response sends the
// encodings its hashing made, without encoding it again, and keeps none of
// them; later responses encode it again, to the same bytes.
func TestOwnListSentFromItsHashing(t *testing.T) {
	own, err := newHasher().ownList([]types.Resource{
		&endpointv3.ClusterLoadAssignment{ClusterName: "inbound|8080||a"},
		&endpointv3.ClusterLoadAssignment{ClusterName: "inbound|9090||a"},
	})
	if err != nil {
		t.Fatal(err)
	}
	first := own.first.Load()
	if first == nil || len(*first) != 2 {
		t.Fatalf("the own list holds no encodings from its hashing: %v", first)
	}
	sent := own.ownAnys([]int{1})
	if len(sent) != 1 || sent[0] != (*first)[1] {
		t.Errorf("the first response encoded the list again instead of sending its hashing's encodings")
	}
	// A response dropped and made again (an inline push over its budget)
	// is made from them too, until the flush is over.
	if resent := own.ownAnys(nil); len(resent) != 2 || resent[1] != (*first)[1] {
		t.Errorf("the first response, made again, encoded the list again")
	}
	(&typeSnapshot{own: own}).firstDone()
	if own.first.Load() != nil {
		t.Error("the own list keeps its encodings after its first flush")
	}
	again := own.ownAnys(nil)
	for i, a := range again {
		if a == (*first)[i] || !proto.Equal(a, (*first)[i]) {
			t.Errorf("resource %d: sent again as %v, first as %v; want the same bytes, encoded again", i, a, (*first)[i])
		}
	}
}

// ownListStream is a stream of one requested type (CDS, wildcard) whose
// snapshot pairs a shared list with a new own list, and the responses it
// sends.
func ownListStream(t *testing.T, delta bool) (*xdsStream, *typeState, *typeSnapshot, *[]*encodedMsg) {
	t.Helper()
	m, err := newMetrics(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := newADS(slog.New(slog.DiscardHandler), m, func(float64) {})
	h := newHasher()
	shared, err := h.list([]types.Resource{&clusterv3.Cluster{Name: "outbound|80||s.default.svc.cluster.local"}})
	if err != nil {
		t.Fatal(err)
	}
	own, err := h.ownList([]types.Resource{&clusterv3.Cluster{Name: "inbound|8080||a.default.svc.cluster.local"}})
	if err != nil {
		t.Fatal(err)
	}
	ts, err := h.pair(shared, own)
	if err != nil {
		t.Fatal(err)
	}
	if own.first.Load() == nil {
		t.Fatal("the own list holds no encodings from its hashing")
	}
	i := typeIndex(resourcev3.ClusterType)
	c := a.newConn(&snapshot.Proxy{ID: podNodeID}, nil, delta, nil)
	c.snap = &nodeSnapshot{}
	c.snap.types[i] = ts
	var sent []*encodedMsg
	s := &xdsStream{a: a, c: c, delta: delta, send: func(m any) error { sent = append(sent, m.(*encodedMsg)); return nil }}
	st := &typeState{index: int32(i), requested: true, sub: subscription{wildcard: true}}
	s.types[i] = st
	return s, st, ts, &sent
}

// TestOwnListEncodingsNotKeptWhenNothingIsSent: a proxy that reconnects
// holding the current version (SotW: the version it presents; delta: the
// initial versions of every resource) is sent nothing, and its own list's
// hash-time encodings, kept for a first response that does not come, must
// not stay with the list for as long as the proxy is connected (fails
// before firstDone).
func TestOwnListEncodingsNotKeptWhenNothingIsSent(t *testing.T) {
	for _, delta := range []bool{false, true} {
		s, st, ts, sent := ownListStream(t, delta)
		if delta {
			st.initial = map[string]string{}
			for _, tr := range ts.parts() {
				for j, n := range tr.names {
					st.initial[n] = tr.vers[j]
				}
			}
		} else {
			st.presented = ts.version
		}
		if err := s.flush(); err != nil {
			t.Fatal(err)
		}
		if len(*sent) != 0 || st.held != ts {
			t.Fatalf("delta %v: %d responses sent to a proxy holding the current version, want none", delta, len(*sent))
		}
		if f := ts.own.first.Load(); f != nil {
			t.Errorf("delta %v: nothing was sent, yet the own list keeps %d encodings for its first response", delta, len(*f))
		}
	}
}

// TestOwnListFirstEncodingsLastTheFlush: a push from the waker over its
// budget sends nothing and leaves the response to serve's flush, which
// still has the own list's hash-time encodings; once that response is
// made, before it is sent, they are gone.
func TestOwnListFirstEncodingsLastTheFlush(t *testing.T) {
	for _, delta := range []bool{false, true} {
		s, _, ts, sent := ownListStream(t, delta)
		s.inline, s.budget = true, 8
		if err := s.flush(); !errors.Is(err, errOverBudget) || len(*sent) != 0 {
			t.Fatalf("delta %v: push over budget: %v, %d sent; want errOverBudget, none", delta, err, len(*sent))
		}
		if ts.own.first.Load() == nil {
			t.Errorf("delta %v: the push over budget used up the own list's encodings before serve's flush sent them", delta)
		}
		s.inline = false
		send := s.send
		s.send = func(m any) error {
			if ts.own.first.Load() != nil {
				t.Errorf("delta %v: the own list keeps its encodings while its first response is sent (it may wait for the proxy to read)", delta)
			}
			return send(m)
		}
		if err := s.flush(); err != nil || len(*sent) != 1 {
			t.Fatalf("delta %v: flush: %v, %d sent; want one response", delta, err, len(*sent))
		}
		if ts.own.first.Load() != nil {
			t.Errorf("delta %v: the own list keeps its encodings after its first response", delta)
		}
		var b []byte
		b = append(b, (*sent)[0].head...)
		for _, p := range (*sent)[0].parts {
			b = append(b, p...)
		}
		var names []string
		if delta {
			var r discoveryv3.DeltaDiscoveryResponse
			if err := proto.Unmarshal(b, &r); err != nil {
				t.Fatal(err)
			}
			for _, res := range r.GetResources() {
				names = append(names, res.GetName())
			}
		} else {
			var r discoveryv3.DiscoveryResponse
			if err := proto.Unmarshal(b, &r); err != nil {
				t.Fatal(err)
			}
			for _, a := range r.GetResources() {
				var c clusterv3.Cluster
				if err := a.UnmarshalTo(&c); err != nil {
					t.Fatal(err)
				}
				names = append(names, c.GetName())
			}
		}
		slices.Sort(names)
		if want := []string{"inbound|8080||a.default.svc.cluster.local", "outbound|80||s.default.svc.cluster.local"}; !slices.Equal(names, want) {
			t.Errorf("delta %v: sent %q, want %q", delta, names, want)
		}
	}
}
