package server

import (
	"runtime"
	"testing"
	"time"
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
