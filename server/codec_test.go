package server

import (
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// decodeSotW decodes req as the server does, with last as the stream's
// known names of the type.
func decodeSotW(t *testing.T, in *interner, req *discoveryv3.DiscoveryRequest, last *nameSet) *sotwRequest {
	t.Helper()
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	m := &sotwRequest{seed: in.seed, interned: in.lookup, known: map[string]*nameSet{req.GetTypeUrl(): last}}
	if err := m.unmarshal(b); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	return m
}

func TestSotWRequestReusesKnownNames(t *testing.T) {
	in := newInterner()
	names := []string{"outbound|5432||pg.default.svc.cluster.local", "outbound|8080||inventory.default.svc.cluster.local"}
	req := &discoveryv3.DiscoveryRequest{
		TypeUrl: resourcev3.EndpointType, VersionInfo: "v1", ResponseNonce: "7", ResourceNames: names,
		ErrorDetail: &rpcstatus.Status{Code: 3, Message: "bad"},
	}

	first := decodeSotW(t, in, req, nil)
	if first.set != nil || len(first.names) != 2 || first.names[0] != names[0] {
		t.Fatalf("first request: set %v, names %q; want the names decoded", first.set, first.names)
	}
	if first.req.GetResponseNonce() != "7" || first.req.GetVersionInfo() != "v1" || first.req.GetErrorDetail().GetMessage() != "bad" || len(first.req.GetResourceNames()) != 0 {
		t.Errorf("other fields decoded as %v", &first.req)
	}
	set := in.of(first.names)

	tests := []struct {
		name     string
		names    []string
		wantSame bool
	}{
		{"same names", names, true},
		{"same names, other order", []string{names[1], names[0]}, true},
		{"a name repeated", []string{names[0], names[1], names[0]}, false}, // decoded; the stream interns it to the same set
		{"one name more", append([]string{"outbound|1||x"}, names...), false},
		{"one name more at the end", append(slices.Clone(names), "outbound|1||x"), false},
		{"one name less", names[:1], false},
		{"one name other", []string{names[0], "outbound|1||x"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := proto.Clone(req).(*discoveryv3.DiscoveryRequest)
			r.ResourceNames = tc.names
			got := decodeSotW(t, in, r, set)
			if tc.wantSame {
				if got.set != set || got.names != nil {
					t.Errorf("set %p names %q; want the known set %p and no strings", got.set, got.names, set)
				}
				return
			}
			if got.set != nil || len(got.names) != len(tc.names) {
				t.Errorf("set %v names %q; want the %d names decoded", got.set, got.names, len(tc.names))
			}
		})
	}

	// Names of 128 bytes or more take the general path; names may be split
	// by another field.
	long := strings.Repeat("x", 200)
	lr := &discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: []string{"a", long}}
	got := decodeSotW(t, in, lr, nil)
	if !slices.Equal(got.names, []string{"a", long}) {
		t.Fatalf("long name decoded as %q", got.names)
	}
	lb, _ := proto.Marshal(lr)
	split := append(append([]byte{}, lb...), 0x2a, 1, 'n') // response_nonce "n" after the names
	split = append(split, 0x1a, 1, 'b')                    // and one more name after it
	m := &sotwRequest{seed: in.seed, interned: in.lookup, known: map[string]*nameSet{}}
	if err := m.unmarshal(split); err != nil || !slices.Equal(m.names, []string{"a", long, "b"}) || m.req.GetResponseNonce() != "n" {
		t.Fatalf("split names decoded as %q, nonce %q, err %v", m.names, m.req.GetResponseNonce(), err)
	}
	splitSet := in.of(m.names)
	again := &sotwRequest{seed: in.seed, interned: in.lookup, known: map[string]*nameSet{m.req.GetTypeUrl(): splitSet}}
	if err := again.unmarshal(split); err != nil || again.set != splitSet || again.names != nil {
		t.Errorf("the same split request was not matched with the known names: set %v names %q err %v", again.set, again.names, err)
	}

	bad := &discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType}
	b, _ := proto.Marshal(bad)
	b = append(b, 0x1a, 2, 0xff, 0xfe) // resource_names: "\xff\xfe"
	m = &sotwRequest{seed: in.seed, interned: in.lookup, known: map[string]*nameSet{}}
	if err := m.unmarshal(b); err == nil {
		t.Error("a resource name that is not UTF-8 was accepted")
	}

	// A stream's first request naming a set another stream interned gets
	// that set, with no strings made.
	other := decodeSotW(t, in, &discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: []string{names[1], names[0]}}, nil)
	if other.set != set || other.names != nil {
		t.Errorf("first request naming an interned set: set %p names %q, want %p", other.set, other.names, set)
	}
}

func TestDeltaRequestUsesInternedSubscription(t *testing.T) {
	in := newInterner()
	names := []string{"outbound|1||a", "outbound|2||b"}
	decode := func(req *discoveryv3.DeltaDiscoveryRequest) *deltaRequest {
		t.Helper()
		b, err := proto.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		m := &deltaRequest{seed: in.seed, interned: in.lookup}
		if err := m.unmarshal(b); err != nil {
			t.Fatal(err)
		}
		return m
	}
	req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResponseNonce: "3", ResourceNamesSubscribe: names, ResourceNamesUnsubscribe: []string{"x"}}
	first := decode(req)
	if first.set != nil || !slices.Equal(first.req.GetResourceNamesSubscribe(), names) {
		t.Fatalf("nothing interned: set %v, names %q; want the names", first.set, first.req.GetResourceNamesSubscribe())
	}
	set := in.of(names)
	second := decode(req)
	if second.set != set || second.req.GetResourceNamesSubscribe() != nil {
		t.Errorf("interned: set %p, names %q; want %p and no names", second.set, second.req.GetResourceNamesSubscribe(), set)
	}
	if second.req.GetResponseNonce() != "3" || !slices.Equal(second.req.GetResourceNamesUnsubscribe(), []string{"x"}) || second.GetNode() != nil {
		t.Errorf("other fields: %v", &second.req)
	}

	// The other fields before, between and after the names, as an encoder
	// may order them, are all decoded.
	tail, err := proto.Marshal(&discoveryv3.DeltaDiscoveryRequest{ResponseNonce: "9", InitialResourceVersions: map[string]string{"a": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	nodeBytes, err := proto.Marshal(node(podNodeID))
	if err != nil {
		t.Fatal(err)
	}
	b := protowire.AppendTag(nil, 1, protowire.BytesType) // node
	b = protowire.AppendBytes(b, nodeBytes)
	b = protowire.AppendTag(b, subscribeField, protowire.BytesType)
	b = protowire.AppendString(b, names[1])
	b = protowire.AppendTag(b, 2, protowire.BytesType) // type_url
	b = protowire.AppendString(b, resourcev3.EndpointType)
	b = protowire.AppendTag(b, subscribeField, protowire.BytesType)
	b = protowire.AppendString(b, names[0])
	b = append(b, tail...)
	m := &deltaRequest{seed: in.seed, interned: in.lookup}
	if err := m.unmarshal(b); err != nil {
		t.Fatal(err)
	}
	if m.set != set || m.req.GetResourceNamesSubscribe() != nil || m.GetNode().GetId() != podNodeID || m.req.GetTypeUrl() != resourcev3.EndpointType ||
		m.req.GetResponseNonce() != "9" || m.req.GetInitialResourceVersions()["a"] != "1" {
		t.Errorf("interleaved: set %p (want %p), fields %v", m.set, set, &m.req)
	}
}

func TestInternerSharesSets(t *testing.T) {
	in := newInterner()
	a := in.of([]string{"a", "b", "c"})
	if b := in.of([]string{"c", "a", "b"}); b != a {
		t.Error("the same names in another order gave another set")
	}
	if d := in.of([]string{"a", "b", "c", "a"}); d != a || len(d.names) != 3 {
		t.Errorf("a list naming one twice gave %v, want the set of three", d)
	}
	if u := in.update(in.of([]string{"a", "b"}), []string{"c", "d"}, []string{"d"}); u != a {
		t.Error("update to {a b c} gave another set than of({a b c})")
	}
	if u := in.update(a, nil, []string{"a", "b", "c"}); u != nil {
		t.Errorf("removing every name gave %v, want nil", u)
	}
	if in.of(nil) != nil {
		t.Error("no names gave a set")
	}
	s := subscription{set: a}
	if !s.has("b") || s.has("z") || !(subscription{wildcard: true}).has("z") {
		t.Error("subscription.has is wrong")
	}
}

// TestInternerDropsUnusedSets: a set no stream holds is collected and its
// entry removed, so old subscriptions do not pile up.
func TestInternerDropsUnusedSets(t *testing.T) {
	in := newInterner()
	kept := in.of([]string{"kept"})
	in.of([]string{"dropped-1", "dropped-2"})
	deadline := time.Now().Add(5 * time.Second)
	for {
		runtime.GC()
		in.mu.Lock()
		n := len(in.sets)
		in.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sets interned after GC, want 1 (the one still held)", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if in.of([]string{"kept"}) != kept {
		t.Error("a set still held is no longer handed out")
	}
}

func TestDiffCacheKeepsTwoGenerations(t *testing.T) {
	h := newHasher()
	a, _ := h.list(nil)
	b := &typeResources{names: []string{"x"}, vers: []string{"1"}}
	c := newDiffCache()
	d := c.lists(a, b)
	if !slices.Equal(d.changed, []string{"x"}) || len(d.removed) != 0 {
		t.Fatalf("diff %+v, want x changed", d)
	}
	c.rotate()
	if c.lists(a, b) != d {
		t.Error("the last push's diff was computed again")
	}
	c.rotate()
	c.rotate()
	if n := len(c.pairs.cur) + len(c.pairs.prev); n != 0 {
		t.Errorf("%d diffs kept after two pushes without use, want 0", n)
	}
}

// TestLaterNodeNotDecoded: once a stream has its node, a node a later
// request repeats is stepped over, not decoded (nor checked), in SotW and
// delta requests alike, whole or in pieces; the other fields decode as
// before. The stream's first request decodes its node, and refuses a
// malformed one.
func TestLaterNodeNotDecoded(t *testing.T) {
	in := newInterner()
	known := in.of([]string{"outbound|8080||inventory.default.svc.cluster.local"})
	bad := protowire.AppendTag(nil, 1, protowire.BytesType) // Node.id, not UTF-8
	bad = protowire.AppendBytes(bad, []byte{0xff, 0xfe})
	withNode := func(num protowire.Number, node []byte, rest proto.Message) []byte {
		b, err := proto.Marshal(rest)
		if err != nil {
			t.Fatal(err)
		}
		b = protowire.AppendTag(b, num, protowire.BytesType)
		return protowire.AppendBytes(b, node)
	}
	good, err := proto.Marshal(node(podNodeID))
	if err != nil {
		t.Fatal(err)
	}
	sotwACK := &discoveryv3.DiscoveryRequest{VersionInfo: "7", TypeUrl: resourcev3.EndpointType, ResponseNonce: "3", ResourceNames: known.appendNames(nil)}
	deltaReq := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResponseNonce: "3", ResourceNamesUnsubscribe: []string{"x"}}
	for _, node := range [][]byte{good, bad} {
		sotw := withNode(sotwNodeField, node, sotwACK)
		for _, cut := range []int{len(sotw), 7} {
			var data mem.BufferSlice
			for rest := sotw; len(rest) > 0; rest = rest[min(cut, len(rest)):] {
				data = append(data, mem.SliceBuffer(rest[:min(cut, len(rest))]))
			}
			m := &sotwRequest{seed: in.seed, interned: in.lookup}
			m.reset()
			m.skipNode = true
			m.known = map[string]*nameSet{resourcev3.EndpointType: known}
			raw := rawMsg{data: data, pool: mem.DefaultBufferPool()}
			if err := raw.decode(m); err != nil {
				t.Fatalf("SotW, pieces of %d: %v", cut, err)
			}
			if m.GetNode() != nil || m.nodeWire != nil || m.set != known || m.req.GetVersionInfo() != "7" || m.req.GetResponseNonce() != "3" {
				t.Errorf("SotW, pieces of %d: node %v, kept %q, set %p (want %p), fields %v", cut, m.GetNode(), m.nodeWire, m.set, known, &m.req)
			}
		}
		d := &deltaRequest{seed: in.seed, interned: in.lookup}
		d.reset()
		d.skipNode = true
		if err := d.unmarshal(withNode(deltaNodeField, node, deltaReq)); err != nil {
			t.Fatalf("delta: %v", err)
		}
		if d.GetNode() != nil || d.req.GetResponseNonce() != "3" || !slices.Equal(d.req.GetResourceNamesUnsubscribe(), []string{"x"}) {
			t.Errorf("delta: node %v, fields %v", d.GetNode(), &d.req)
		}
	}
	// A first request's node is decoded, and a malformed one refused.
	m := &sotwRequest{seed: in.seed, interned: in.lookup}
	m.reset()
	if err := m.unmarshal(withNode(sotwNodeField, good, sotwACK)); err != nil || m.GetNode().GetId() != podNodeID {
		t.Errorf("first SotW request: node %v, %v", m.GetNode(), err)
	}
	m.reset()
	if err := m.unmarshal(withNode(sotwNodeField, bad, sotwACK)); err == nil {
		t.Error("first SotW request with a malformed node: no error")
	}
	d := &deltaRequest{seed: in.seed, interned: in.lookup}
	d.reset()
	if err := d.unmarshal(withNode(deltaNodeField, bad, deltaReq)); err == nil {
		t.Error("first delta request with a malformed node: no error")
	}
}
