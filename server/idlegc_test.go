package server

import (
	"runtime"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

var sink [][]byte

func TestIdleGCCollectsOnlyPastHalfway(t *testing.T) {
	g := newIdleGC()
	runtime.GC()
	if g.maybe() {
		t.Fatal("started a collection right after one (the heap is at its live size)")
	}
	// Garbage, a megabyte at a time, until the heap is past halfway to its
	// goal. How much that takes depends on the live heap the package's
	// other tests left, and the runtime may collect on its own meanwhile:
	// then it starts again from the live size.
	var before runtime.MemStats
	deadline := time.Now().Add(5 * time.Second)
	for {
		runtime.ReadMemStats(&before)
		if g.maybe() {
			break
		}
		for i := 0; i < 256; i++ {
			sink = append(sink, make([]byte, 4<<10))
		}
		sink = nil
		if time.Now().After(deadline) {
			t.Fatal("never started a collection with the heap past halfway to its goal")
		}
	}
	for g.running.Load() {
		time.Sleep(time.Millisecond)
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if after.NumGC <= before.NumGC {
		t.Errorf("NumGC %d -> %d: the started collection did not run", before.NumGC, after.NumGC)
	}
}

// TestIdleGCCheckedAfterConnect: a proxy connecting starts a quiet spell, as
// a push does, after which the push loop looks at the heap. A fleet that
// connects without any change leaves the heap near the runtime's trigger,
// and without the check the first change would pay for the collection.
func TestIdleGCCheckedAfterConnect(t *testing.T) {
	s := startServer(t, newFakeRegistry(defaultWorld()))
	waitFor(t, "the quiet spell after the first push", func() bool { return s.idleGC.checks.Load() == 1 })
	time.Sleep(2 * idleGCAfter)
	if n := s.idleGC.checks.Load(); n != 1 {
		t.Fatalf("%d heap checks with nothing happening, want 1 (the one after the first push)", n)
	}
	st, rx := sotwStream(t, s)
	if err := st.Send(&discoveryv3.DiscoveryRequest{Node: node(podNodeID), TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatal(err)
	}
	if _, err := rx.next(5 * time.Second); err != nil {
		t.Fatalf("no CDS response: %v", err)
	}
	waitFor(t, "the quiet spell after the connection", func() bool { return s.idleGC.checks.Load() == 2 })
	time.Sleep(2 * idleGCAfter)
	if n := s.idleGC.checks.Load(); n != 2 {
		t.Fatalf("%d heap checks, want 2: one after the first push, one after the connection", n)
	}
}
