package server

import (
	"fmt"
	"slices"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// ackFrames returns a SotW EDS ACK naming n clusters, encoded and cut into
// pieces of at most frame bytes as gRPC hands a message over when it came
// in several HTTP/2 frames.
func ackFrames(t testing.TB, n, frame int) (names []string, data mem.BufferSlice) {
	for i := range n {
		names = append(names, fmt.Sprintf("outbound|8080||svc-%04d.default.svc.cluster.local", i))
	}
	b, err := proto.Marshal(&discoveryv3.DiscoveryRequest{
		TypeUrl: resourcev3.EndpointType, VersionInfo: "v42", ResponseNonce: "17", ResourceNames: names,
	})
	if err != nil {
		t.Fatal(err)
	}
	for len(b) > 0 {
		k := min(frame, len(b))
		data = append(data, mem.SliceBuffer(b[:k]))
		b = b[k:]
	}
	return names, data
}

// readRaw is how a stream reads a request: gRPC hands the codec data for a
// rawMsg, which is then decoded into req.
func readRaw(c codec, data mem.BufferSlice, req xdsRequest) error {
	var raw rawMsg
	if err := c.Unmarshal(data, &raw); err != nil {
		return err
	}
	return raw.decode(req)
}

// BenchmarkSotWACK is the decoding of one sidecar's EDS ACK naming 1000
// clusters, the names the stream's last request carried: a thousand
// sidecars each send one after every change.
func BenchmarkSotWACK(b *testing.B) {
	in := newInterner()
	names, data := ackFrames(b, 1000, 16384)
	set := in.of(names)
	pool, err := newBufferPool()
	if err != nil {
		b.Fatal(err)
	}
	c := newCodec(pool)
	known := map[string]*nameSet{}
	first := &sotwRequest{seed: in.seed, known: known, interned: in.lookup}
	if err := readRaw(c, data, first); err != nil {
		b.Fatal(err)
	}
	if first.set != set {
		b.Fatal("the interned set was not found")
	}
	known[resourcev3.EndpointType] = set
	b.ReportAllocs()
	for b.Loop() {
		m := &sotwRequest{seed: in.seed, known: known, interned: in.lookup}
		if err := readRaw(c, data, m); err != nil {
			b.Fatal(err)
		}
		if m.set != set {
			b.Fatal("the known set was not used")
		}
	}
}

// TestSotWRequestInPieces sends, with a real gRPC client, SotW CDS
// requests of 600 names (about 40 KB, more than one HTTP/2 frame): the
// same names again (the ACK), the same names in another order, one name
// fewer and all of them again. CDS is answered with every subscribed
// cluster whenever the subscription changes, so a response comes exactly
// when the decoded set of names changed. The decoder is also given a
// request cut every few bytes, so that names straddle the pieces gRPC
// hands it.
func TestSotWRequestInPieces(t *testing.T) {
	w := defaultWorld()
	real := fmt.Sprintf("outbound|%d||%s", w.port, w.host)
	names, _ := ackFrames(t, 599, 16384)
	names = append(names, real)

	pool, err := newBufferPool()
	if err != nil {
		t.Fatal(err)
	}
	c := newCodec(pool)
	for _, frame := range []int{7, 100, 16384} {
		in := newInterner()
		all, fewer := in.of(names), in.of(names[:599])
		_, data := ackFrames(t, 599, frame)
		for _, known := range []*nameSet{fewer, all, nil} {
			m := &sotwRequest{seed: in.seed, interned: in.lookup, known: map[string]*nameSet{resourcev3.EndpointType: known}}
			if err := readRaw(c, data, m); err != nil {
				t.Fatalf("pieces of %d bytes: %v", frame, err)
			}
			if m.set != fewer || m.names != nil || m.req.GetResponseNonce() != "17" || m.req.GetVersionInfo() != "v42" {
				t.Errorf("pieces of %d bytes, known set of %d: set of %d, %d names, nonce %q, version %q; want the interned set of 599, nonce 17, version v42",
					frame, known.len(), m.set.len(), len(m.names), m.req.GetResponseNonce(), m.req.GetVersionInfo())
			}
		}
	}

	s := startServer(t, newFakeRegistry(w))
	st, rx := sotwStream(t, s)
	send := func(names []string, nonce string) {
		t.Helper()
		if err := st.Send(&discoveryv3.DiscoveryRequest{Node: node(podNodeID), TypeUrl: resourcev3.ClusterType, ResourceNames: names, ResponseNonce: nonce}); err != nil {
			t.Fatal(err)
		}
	}
	response := func(want int) string {
		t.Helper()
		resp, err := rx.next(5 * time.Second)
		if err != nil {
			t.Fatalf("no CDS response: %v", err)
		}
		if got := len(resp.GetResources()); got != want {
			t.Fatalf("CDS response of %d resources, want %d", got, want)
		}
		return resp.GetNonce()
	}
	quiet := func(what string) {
		t.Helper()
		if n := rx.count(200 * time.Millisecond); n != 0 {
			t.Fatalf("%s: %d responses, want none", what, n)
		}
	}
	send(names, "")
	nonce := response(1)
	send(names, nonce)
	quiet("the ACK naming the same names")
	reversed := slices.Clone(names)
	slices.Reverse(reversed)
	send(reversed, nonce)
	quiet("the same names in another order")
	send(names[:599], nonce)
	nonce = response(0)
	send(names[:599], nonce)
	quiet("the ACK of one name fewer")
	send(reversed, nonce)
	response(1)
}

// countingPool is a BufferPool that counts the buffers asked of it.
type countingPool struct {
	mem.BufferPool
	gets int
}

func (p *countingPool) Get(n int) *[]byte {
	p.gets++
	return p.BufferPool.Get(n)
}

// TestSotWACKInPiecesNotJoined: an ACK that came in several frames and
// names the stream's last names is decoded where it lies; its pieces are
// not joined into a buffer (a copy of 49 KB and the clearing of a pooled
// 64 KB, for each of a thousand sidecars after each change). Other names
// are joined and decoded whole.
func TestSotWACKInPiecesNotJoined(t *testing.T) {
	in := newInterner()
	names, data := ackFrames(t, 1000, 16384)
	set := in.of(names)
	if len(data) < 2 {
		t.Fatalf("the ACK came in %d piece, want several", len(data))
	}
	for _, tc := range []struct {
		name  string
		known *nameSet
		joins int
	}{
		{"the stream's last names", set, 0},
		{"fewer names last", in.of(names[:999]), 1},
		{"no names known", nil, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool := &countingPool{BufferPool: mem.DefaultBufferPool()}
			m := &sotwRequest{seed: in.seed, interned: in.lookup, known: map[string]*nameSet{resourcev3.EndpointType: tc.known}}
			if err := readRaw(newCodec(pool), data, m); err != nil {
				t.Fatal(err)
			}
			if m.set != set || m.req.GetResponseNonce() != "17" || m.req.GetVersionInfo() != "v42" || m.req.GetTypeUrl() != resourcev3.EndpointType {
				t.Errorf("set of %d (the interned one: %t), nonce %q, version %q, type %q; want the interned set of 1000, nonce 17, version v42, EDS",
					m.set.len(), m.set == set, m.req.GetResponseNonce(), m.req.GetVersionInfo(), m.req.GetTypeUrl())
			}
			if pool.gets != tc.joins {
				t.Errorf("%d buffers taken to join the pieces, want %d", pool.gets, tc.joins)
			}
		})
	}
}
