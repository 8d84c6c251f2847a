package loadtest

import (
	"bytes"
	"runtime"
	"slices"
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// sameAsProto checks that decodeSotWResponse reads b as proto.Unmarshal
// does, for the fields the load client uses.
func sameAsProto(t *testing.T, b []byte) {
	t.Helper()
	var want discoveryv3.DiscoveryResponse
	if err := proto.Unmarshal(b, &want); err != nil {
		t.Fatalf("proto.Unmarshal(%x): %v", b, err)
	}
	// The wire reader checks less than proto (not UTF-8, not what it
	// skips), so it may take what proto refuses, never the reverse.
	got, err := decodeSotWResponse(b)
	if err != nil {
		t.Fatalf("decodeSotWResponse(%x): %v, proto reads it", b, err)
	}
	if got.versionInfo != want.GetVersionInfo() || got.typeURL != want.GetTypeUrl() || got.nonce != want.GetNonce() {
		t.Errorf("got version %q type %q nonce %q, want %q %q %q", got.versionInfo, got.typeURL, got.nonce,
			want.GetVersionInfo(), want.GetTypeUrl(), want.GetNonce())
	}
	if len(got.resources) != len(want.GetResources()) {
		t.Fatalf("got %d resources, want %d", len(got.resources), len(want.GetResources()))
	}
	for i, r := range want.GetResources() {
		if got.resources[i].typeURL != r.GetTypeUrl() || !bytes.Equal(got.resources[i].value, r.GetValue()) {
			t.Errorf("resource %d: got %q %x, want %q %x", i, got.resources[i].typeURL, got.resources[i].value, r.GetTypeUrl(), r.GetValue())
		}
	}
	if !bytes.Equal(got.raw, b) {
		t.Error("raw is not the message")
	}
}

func TestDecodeSotWResponse(t *testing.T) {
	tests := []struct {
		name string
		resp *discoveryv3.DiscoveryResponse
	}{
		{"empty", &discoveryv3.DiscoveryResponse{}},
		{"no resources", &discoveryv3.DiscoveryResponse{VersionInfo: "v1", TypeUrl: cdsType, Nonce: "n1"}},
		{"resources and fields the client skips", &discoveryv3.DiscoveryResponse{VersionInfo: "v2", TypeUrl: edsType, Nonce: "n2", Canary: true,
			Resources: []*anypb.Any{{TypeUrl: edsType, Value: []byte("first")}, {TypeUrl: edsType}, {Value: []byte{0, 1, 2}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := proto.Marshal(tt.resp)
			if err != nil {
				t.Fatal(err)
			}
			sameAsProto(t, b)
		})
	}
	// Repeated scalar fields: the last one wins, as in proto.
	b := []byte{0x0a, 1, 'a', 0x0a, 1, 'b', 0x22, 1, 't'}
	sameAsProto(t, b)
	if got, _ := decodeSotWResponse(b); got.versionInfo != "b" {
		t.Errorf("version %q, want the last one", got.versionInfo)
	}
	for _, bad := range [][]byte{{0x12, 5, 0x0a}, {0x12, 2, 0x12, 9}, {0x0a}} {
		if _, err := decodeSotWResponse(bad); err == nil {
			t.Errorf("decodeSotWResponse(%x) took a truncated message", bad)
		}
	}
}

func FuzzDecodeSotWResponse(f *testing.F) {
	for _, r := range []*discoveryv3.DiscoveryResponse{
		{VersionInfo: "v1", TypeUrl: cdsType, Nonce: "n1", Resources: []*anypb.Any{{TypeUrl: cdsType, Value: []byte("x")}}},
		{Canary: true},
	} {
		b, _ := proto.Marshal(r)
		f.Add(b)
	}
	f.Add([]byte{0x12, 5, 0x0a})
	f.Fuzz(func(t *testing.T, b []byte) {
		var want discoveryv3.DiscoveryResponse
		if proto.Unmarshal(b, &want) != nil {
			_, _ = decodeSotWResponse(b) // must not panic
			return
		}
		sameAsProto(t, b)
	})
}

// TestSotWACKEncoding checks that the client's own encoding of a request
// is proto's.
func TestSotWACKEncoding(t *testing.T) {
	tests := []struct {
		name string
		req  *discoveryv3.DiscoveryRequest
	}{
		{"empty", &discoveryv3.DiscoveryRequest{}},
		{"first request", &discoveryv3.DiscoveryRequest{TypeUrl: edsType, ResourceNames: []string{"a", "outbound|8080||b.default.svc.cluster.local"}}},
		{"ack", &discoveryv3.DiscoveryRequest{VersionInfo: "v7", TypeUrl: edsType, ResponseNonce: "n9", ResourceNames: []string{"a", "", "c"}}},
		{"ack without names", &discoveryv3.DiscoveryRequest{VersionInfo: "v1", TypeUrl: cdsType, ResponseNonce: "1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := proto.MarshalOptions{Deterministic: true}.Marshal(tt.req)
			if err != nil {
				t.Fatal(err)
			}
			r := &sotwACK{versionInfo: tt.req.VersionInfo, typeURL: tt.req.TypeUrl, nonce: tt.req.ResponseNonce, names: encodeNames(tt.req.ResourceNames)}
			got, err := newClientCodec().Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			if b := got.Materialize(); !bytes.Equal(b, want) || r.size() != len(want) {
				t.Errorf("encoded %x (size %d), proto encodes %x", b, r.size(), want)
			}
		})
	}
}

// BenchmarkDecodeSotWResponse reads a CDS response of 1000 clusters, the
// size a proxy of scenario S gets on every new service in SotW.
func BenchmarkDecodeSotWResponse(b *testing.B) {
	resp := &discoveryv3.DiscoveryResponse{VersionInfo: "v1", TypeUrl: cdsType, Nonce: "n1"}
	for range 1000 {
		resp.Resources = append(resp.Resources, &anypb.Any{TypeUrl: cdsType, Value: bytes.Repeat([]byte{'c'}, 600)})
	}
	msg, err := proto.Marshal(resp)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeSotWResponse(msg); err != nil {
			b.Fatal(err)
		}
	}
}

// TestKeepPool checks the client's buffer pool: a buffer comes back from
// its tier at the size asked for, stays pooled across garbage collections,
// and sizes past the largest tier, or buffers the pool did not make, are
// not pooled.
func TestKeepPool(t *testing.T) {
	p := newKeepPool(8, 12, 4<<10) // 256 B .. 4 KB, 16 buffers a tier
	for _, tc := range []struct{ size, capacity int }{
		{0, 256}, {1, 256}, {256, 256}, {257, 512}, {4096, 4096}, {4097, 4097},
	} {
		b := p.Get(tc.size)
		if len(*b) != tc.size || cap(*b) != tc.capacity {
			t.Errorf("Get(%d): len %d cap %d, want len %d cap %d", tc.size, len(*b), cap(*b), tc.size, tc.capacity)
		}
	}
	b := p.Get(300)
	(*b)[0] = 7
	p.Put(b)
	runtime.GC()
	runtime.GC() // a sync.Pool would have dropped it by now
	if got := p.Get(400); got != b || len(*got) != 400 || (*got)[0] != 7 {
		t.Errorf("Get(400) after Put and two collections: %p (len %d), want the 512 B buffer put back (%p)", got, len(*got), b)
	}
	other := make([]byte, 300) // not a tier's capacity
	p.Put(&other)
	if got := p.Get(300); got == &other {
		t.Error("a buffer the pool did not make was pooled")
	}
	for range 20 { // more than a 4 KB tier keeps (16): the rest are dropped
		buf := make([]byte, 4096)
		p.Put(&buf)
	}
	if n := len(p.tiers[4]); n != cap(p.tiers[4]) || n != 16 {
		t.Errorf("4 KB tier holds %d buffers (capacity %d), want 16", n, cap(p.tiers[4]))
	}
}

// sameDeltaAsProto checks that decodeDeltaResponse reads b as
// proto.Unmarshal does, for the fields the load client uses.
func sameDeltaAsProto(t *testing.T, b []byte) {
	t.Helper()
	var want discoveryv3.DeltaDiscoveryResponse
	if err := proto.Unmarshal(b, &want); err != nil {
		t.Fatalf("proto.Unmarshal(%x): %v", b, err)
	}
	got, err := decodeDeltaResponse(b)
	if err != nil {
		t.Fatalf("decodeDeltaResponse(%x): %v, proto reads it", b, err)
	}
	if got.typeURL != want.GetTypeUrl() || got.nonce != want.GetNonce() || !slices.Equal(got.removed, want.GetRemovedResources()) {
		t.Errorf("got type %q nonce %q removed %q, want %q %q %q", got.typeURL, got.nonce, got.removed,
			want.GetTypeUrl(), want.GetNonce(), want.GetRemovedResources())
	}
	if len(got.resources) != len(want.GetResources()) {
		t.Fatalf("got %d resources, want %d", len(got.resources), len(want.GetResources()))
	}
	for i, r := range want.GetResources() {
		g := got.resources[i]
		if string(g.name) != r.GetName() || g.any.typeURL != r.GetResource().GetTypeUrl() || !bytes.Equal(g.any.value, r.GetResource().GetValue()) {
			t.Errorf("resource %d: got %q %q %x, want %q %q %x", i, g.name, g.any.typeURL, g.any.value,
				r.GetName(), r.GetResource().GetTypeUrl(), r.GetResource().GetValue())
		}
	}
	if !bytes.Equal(got.raw, b) {
		t.Error("raw is not the message")
	}
}

func TestDecodeDeltaResponse(t *testing.T) {
	tests := []struct {
		name string
		resp *discoveryv3.DeltaDiscoveryResponse
	}{
		{"empty", &discoveryv3.DeltaDiscoveryResponse{}},
		{"removed only", &discoveryv3.DeltaDiscoveryResponse{TypeUrl: cdsType, Nonce: "n1", RemovedResources: []string{"a", "b"}}},
		{"resources and fields the client skips", &discoveryv3.DeltaDiscoveryResponse{SystemVersionInfo: "v2", TypeUrl: edsType, Nonce: "n2",
			Resources: []*discoveryv3.Resource{
				{Name: "first", Version: "1", Aliases: []string{"x"}, Resource: &anypb.Any{TypeUrl: edsType, Value: []byte("first")}},
				{Name: "no resource"},
				{Resource: &anypb.Any{Value: []byte{0, 1, 2}}},
			}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := proto.Marshal(tt.resp)
			if err != nil {
				t.Fatal(err)
			}
			sameDeltaAsProto(t, b)
		})
	}
	// A Resource's Any in two fields is merged, as proto merges it.
	b := []byte{0x12, 10, 0x12, 3, 0x0a, 1, 'a', 0x12, 3, 0x12, 1, 'v'}
	sameDeltaAsProto(t, b)
	for _, bad := range [][]byte{{0x12, 5, 0x0a}, {0x12, 2, 0x12, 9}, {0x32}} {
		if _, err := decodeDeltaResponse(bad); err == nil {
			t.Errorf("decodeDeltaResponse(%x) took a truncated message", bad)
		}
	}
}

func FuzzDecodeDeltaResponse(f *testing.F) {
	for _, r := range []*discoveryv3.DeltaDiscoveryResponse{
		{TypeUrl: cdsType, Nonce: "n1", Resources: []*discoveryv3.Resource{{Name: "c", Version: "1", Resource: &anypb.Any{TypeUrl: cdsType, Value: []byte("x")}}}},
		{RemovedResources: []string{"gone"}, SystemVersionInfo: "v"},
	} {
		b, _ := proto.Marshal(r)
		f.Add(b)
	}
	f.Add([]byte{0x12, 10, 0x12, 3, 0x0a, 1, 'a', 0x12, 3, 0x12, 1, 'v'})
	f.Fuzz(func(t *testing.T, b []byte) {
		var want discoveryv3.DeltaDiscoveryResponse
		if proto.Unmarshal(b, &want) != nil {
			_, _ = decodeDeltaResponse(b) // must not panic
			return
		}
		sameDeltaAsProto(t, b)
	})
}
