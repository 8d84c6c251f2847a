package server

import (
	"maps"
	"runtime"
	"slices"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// fuzzNames are interned before each run, so hash hits happen.
var fuzzNames = [][]string{
	{"outbound|8080||inventory.default.svc.cluster.local", "outbound|5432||postgres-1-vm.default.svc.cluster.local"},
	{"outbound|8080||inventory.default.svc.cluster.local"},
}

func fuzzSeeds(f *testing.F, msgs ...proto.Message) {
	for _, m := range msgs {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0x1a, 0x05, 'a'}) // a name whose length runs past the end
	f.Add([]byte{0x1a, 0x02, 0xff, 0xfe})
}

// FuzzSotWRequest checks the server's lazy SotW decoder against a plain
// proto decode of the same bytes: same fields, same set of names, whether
// the names came from an interned set or not.
func FuzzSotWRequest(f *testing.F) {
	node := &corev3.Node{Id: "sidecar~10.8.0.5~inventory-abc.default~default.svc.cluster.local"}
	fuzzSeeds(f,
		&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.EndpointType, ResourceNames: fuzzNames[0]},
		&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResponseNonce: "3", ResourceNames: append(slices.Clone(fuzzNames[1]), fuzzNames[1]...)},
		&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResourceNames: []string{"*"}, VersionInfo: "v"},
		// The stream's known EDS names, as an EDS ACK and under another type.
		&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResponseNonce: "4", ResourceNames: fuzzNames[1]},
		&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResourceNames: fuzzNames[1]},
	)
	before, err := proto.Marshal(&discoveryv3.DiscoveryRequest{
		VersionInfo: "8", Node: node, TypeUrl: resourcev3.ClusterType, ResponseNonce: "9", ResourceNames: []string{"x", "y"},
		ErrorDetail: &rpcstatus.Status{Message: "before"},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		in := newInterner()
		var keep []*nameSet
		for _, names := range fuzzNames {
			keep = append(keep, in.of(names))
		}
		known := map[string]*nameSet{resourcev3.EndpointType: keep[1]}
		m := &sotwRequest{seed: in.seed, known: known, interned: in.lookup}
		got := m.unmarshal(b)
		samePieces(t, b, got, m, func() *sotwRequest { return &sotwRequest{seed: in.seed, known: known, interned: in.lookup} })
		want := &discoveryv3.DiscoveryRequest{}
		wantErr := proto.Unmarshal(b, want)
		if got != nil {
			if wantErr == nil {
				t.Fatalf("lazy decode failed (%v), proto decoded %v", got, want)
			}
			return
		}
		if wantErr != nil {
			t.Fatalf("lazy decode succeeded, proto failed: %v", wantErr)
		}
		names := m.names
		if m.set != nil {
			names = m.set.appendNames(nil)
		}
		if !sameNames(names, want.GetResourceNames()) {
			t.Fatalf("names %q (set %v), want %q", names, m.set != nil, want.GetResourceNames())
		}
		want.ResourceNames = nil
		if !proto.Equal(&m.req, want) {
			t.Fatalf("fields %v, want %v", &m.req, want)
		}
		// A stream that has its node decodes the rest alike, and no node.
		later := func() *sotwRequest {
			r := &sotwRequest{seed: in.seed, interned: in.lookup}
			r.reset()
			r.skipNode = true
			r.known = known
			return r
		}
		// Decoded into a sotwRequest used before: streams reuse them from a
		// pool, and what one request set must not reach the next.
		m2 := later()
		if err := m2.unmarshal(before); err != nil {
			t.Fatal(err)
		}
		m2.reset()
		m2.skipNode = true
		m2.known = known
		if err := m2.unmarshal(b); err != nil {
			t.Fatalf("with the node skipped: %v", err)
		}
		samePieces(t, b, nil, m2, later)
		if m2.set != m.set || !slices.Equal(m2.names, m.names) {
			t.Fatalf("with the node skipped: set %p, names %q; want set %p, names %q", m2.set, m2.names, m.set, m.names)
		}
		want.Node = nil
		if !proto.Equal(&m2.req, want) {
			t.Fatalf("with the node skipped: fields %v, want %v", &m2.req, want)
		}
		runtime.KeepAlive(keep)
	})
}

// samePieces checks that b, cut into pieces as gRPC hands over a message
// of several HTTP/2 frames, decodes as it did whole (err, into whole).
func samePieces(t *testing.T, b []byte, err error, whole *sotwRequest, fresh func() *sotwRequest) {
	t.Helper()
	cut := 1 + len(b)%5
	var data mem.BufferSlice
	for rest := b; len(rest) > 0; rest = rest[min(cut, len(rest)):] {
		data = append(data, mem.SliceBuffer(rest[:min(cut, len(rest))]))
	}
	raw := rawMsg{data: data, pool: mem.DefaultBufferPool()}
	m := fresh()
	perr := raw.decode(m)
	switch {
	case (perr == nil) != (err == nil):
		t.Fatalf("in pieces of %d bytes: error %v, whole: %v", cut, perr, err)
	case err != nil:
	case m.set != whole.set || !slices.Equal(m.names, whole.names) || !proto.Equal(&m.req, &whole.req):
		t.Fatalf("in pieces of %d bytes: set %p, names %q, fields %v; whole: set %p, names %q, fields %v",
			cut, m.set, m.names, &m.req, whole.set, whole.names, &whole.req)
	}
}

// FuzzDeltaRequest is FuzzSotWRequest for the delta decoder.
func FuzzDeltaRequest(f *testing.F) {
	fuzzSeeds(f,
		&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: fuzzNames[0]},
		&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: fuzzNames[0][:1], ResourceNamesUnsubscribe: fuzzNames[0][1:]},
		&discoveryv3.DeltaDiscoveryRequest{InitialResourceVersions: map[string]string{"a": "1"}, ResourceNamesSubscribe: []string{"a", "a"}},
		&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "n"}, TypeUrl: resourcev3.EndpointType, ResponseNonce: "1",
			InitialResourceVersions: map[string]string{"x": "2"}, ResourceNamesSubscribe: fuzzNames[0]},
		// ACKs (see unmarshalAnswer).
		&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResponseNonce: "17"},
		&discoveryv3.DeltaDiscoveryRequest{ResponseNonce: "17"},
		&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResponseNonce: "3", ErrorDetail: &rpcstatus.Status{Message: "no"}},
	)
	// A repeated nonce (the last wins), and one that is not UTF-8.
	f.Add([]byte("\x32\x01a\x32\x01b\x12\x01t"))
	f.Add([]byte("\x32\x01\xff"))
	// A request before, decoded into the same deltaRequest: streams reuse
	// them from a pool (see streamSotW), and what one request set must not
	// reach the next.
	before, err := proto.Marshal(&discoveryv3.DeltaDiscoveryRequest{
		Node: &corev3.Node{Id: "n"}, TypeUrl: resourcev3.ClusterType, ResponseNonce: "9", ResourceNamesSubscribe: fuzzNames[0],
		ResourceNamesUnsubscribe: []string{"u"}, InitialResourceVersions: map[string]string{"i": "1"}, ErrorDetail: &rpcstatus.Status{Message: "before"},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		in := newInterner()
		var keep []*nameSet
		for _, names := range fuzzNames {
			keep = append(keep, in.of(names))
		}
		m := &deltaRequest{seed: in.seed, interned: in.lookup}
		if err := m.unmarshal(before); err != nil {
			t.Fatal(err)
		}
		m.reset()
		got := m.unmarshal(b)
		want := &discoveryv3.DeltaDiscoveryRequest{}
		if wantErr := proto.Unmarshal(b, want); (got == nil) != (wantErr == nil) {
			t.Fatalf("lazy decode error %v, proto decode error %v", got, wantErr)
		}
		if got != nil {
			return
		}
		subscribed := m.req.GetResourceNamesSubscribe()
		if m.set != nil {
			subscribed = m.set.appendNames(nil)
		}
		if !sameNames(subscribed, want.GetResourceNamesSubscribe()) {
			t.Fatalf("subscribed %q (set %v), want %q", subscribed, m.set != nil, want.GetResourceNamesSubscribe())
		}
		if m.set != nil {
			want.ResourceNamesSubscribe = nil
		}
		if !proto.Equal(&m.req, want) {
			t.Fatalf("fields %v, want %v", &m.req, want)
		}
		// A stream that has its node decodes the rest alike, and no node.
		m.reset()
		m.skipNode = true
		if err := m.unmarshal(b); err != nil {
			t.Fatalf("with the node skipped: %v", err)
		}
		want = &discoveryv3.DeltaDiscoveryRequest{}
		if err := proto.Unmarshal(b, want); err != nil {
			t.Fatal(err)
		}
		subscribed = m.req.GetResourceNamesSubscribe()
		if m.set != nil {
			subscribed = m.set.appendNames(nil)
		}
		if !sameNames(subscribed, want.GetResourceNamesSubscribe()) {
			t.Fatalf("with the node skipped: subscribed %q (set %v), want %q", subscribed, m.set != nil, want.GetResourceNamesSubscribe())
		}
		want.Node, want.ResourceNamesSubscribe, m.req.ResourceNamesSubscribe = nil, nil, nil
		if !proto.Equal(&m.req, want) {
			t.Fatalf("with the node skipped: fields %v, want %v", &m.req, want)
		}
		runtime.KeepAlive(keep)
	})
}

// sameNames reports whether two lists name the same set.
func sameNames(a, b []string) bool {
	set := func(l []string) map[string]bool {
		m := map[string]bool{}
		for _, n := range l {
			m[n] = true
		}
		return m
	}
	return maps.Equal(set(a), set(b))
}

// FuzzNodeField checks the node a connection keeps as it came (see
// nodeField) against the node proto decodes from the same request: when
// nodeField keeps one, it decodes to exactly that node.
func FuzzNodeField(f *testing.F) {
	node := &corev3.Node{Id: "sidecar~10.8.0.1~inventory-1.default~default.svc.cluster.local", Cluster: "inventory.default"}
	fuzzSeeds(f,
		&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType},
		&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType, ResourceNames: fuzzNames[0]},
		&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResponseNonce: "1"},
		// A reconnecting Envoy's: the version it holds (field 1) beside the node.
		&discoveryv3.DiscoveryRequest{VersionInfo: "7", Node: node, TypeUrl: resourcev3.ClusterType},
	)
	// The node in two fields, which protobuf merges.
	f.Add([]byte("\x0a\x03\x0a\x01a\x12\x01t\x0a\x03\x12\x01c"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, req := range []struct {
			msg interface {
				proto.Message
				GetNode() *corev3.Node
			}
			num protowire.Number
		}{{&discoveryv3.DeltaDiscoveryRequest{}, deltaNodeField}, {&discoveryv3.DiscoveryRequest{}, sotwNodeField}} {
			if proto.Unmarshal(b, req.msg) != nil || req.msg.GetNode() == nil {
				continue
			}
			kept := nodeField(b, req.num)
			if kept == nil {
				continue
			}
			got := &corev3.Node{}
			if err := proto.Unmarshal(kept, got); err != nil {
				t.Fatalf("kept node does not decode: %v", err)
			}
			if !proto.Equal(got, req.msg.GetNode()) {
				t.Fatalf("kept node %v, request's node %v", got, req.msg.GetNode())
			}
		}
	})
}

func TestNodeFieldRefusesASplitNode(t *testing.T) {
	whole, err := proto.Marshal(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "a", Cluster: "c"}, TypeUrl: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if got := nodeField(whole, deltaNodeField); got == nil {
		t.Fatal("a request's one node field was not kept")
	}
	// The same node in two fields: protobuf merges them into the node above.
	split := []byte("\x0a\x03\x0a\x01a\x12\x01t\x0a\x03\x12\x01c")
	req := &discoveryv3.DeltaDiscoveryRequest{}
	if err := proto.Unmarshal(split, req); err != nil || req.GetNode().GetId() != "a" || req.GetNode().GetCluster() != "c" {
		t.Fatalf("split request decodes to %v, %v", req, err)
	}
	if got := nodeField(split, deltaNodeField); got != nil {
		t.Fatalf("a node in two fields was kept as %q, only part of it", got)
	}
}
