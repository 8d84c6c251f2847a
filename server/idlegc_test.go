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
	g := newIdleGC(func() uint64 { return 0 })
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

// TestIdleGCCheckedInQuietSpells: the heap is checked once per quiet spell,
// and a spell is quiet only once no request came for a tick: a proxy
// connecting (no push at all) gets a check after it, and requests that keep
// coming put the check off. A fleet that connects without any change
// leaves the heap near the runtime's trigger, its first responses and ACKs
// go on after the last connection, and without the check the first change
// would pay for the collection.
func TestIdleGCCheckedInQuietSpells(t *testing.T) {
	s := startServer(t, newFakeRegistry(defaultWorld()))
	checks := func() int64 { return s.idleGC.checks.Load() }
	waitFor(t, "the quiet spell after the first push", func() bool { return checks() == 1 })
	time.Sleep(3 * idleGCAfter)
	if n := checks(); n != 1 {
		t.Fatalf("%d heap checks with nothing happening, want 1 (the one after the first push)", n)
	}
	st, rx := sotwStream(t, s)
	req := &discoveryv3.DiscoveryRequest{Node: node(podNodeID), TypeUrl: resourcev3.ClusterType}
	if err := st.Send(req); err != nil {
		t.Fatal(err)
	}
	resp, err := rx.next(5 * time.Second)
	if err != nil {
		t.Fatalf("no CDS response: %v", err)
	}
	// ACKs every quarter tick for six ticks: no spell is quiet meanwhile.
	ack := &discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
	for range 24 {
		if err := st.Send(ack); err != nil {
			t.Fatal(err)
		}
		time.Sleep(idleGCAfter / 4)
	}
	if n := checks(); n != 1 {
		t.Fatalf("%d heap checks while requests kept coming, want still 1", n)
	}
	waitFor(t, "the quiet spell after the requests", func() bool { return checks() == 2 })
	time.Sleep(3 * idleGCAfter)
	if n := checks(); n != 2 {
		t.Fatalf("%d heap checks, want 2: one after the first push, one after the requests", n)
	}
}
