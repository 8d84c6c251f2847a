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
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	// Garbage up to the goal's halfway point and more.
	for i := 0; i < 1<<14; i++ {
		sink = append(sink, make([]byte, 4<<10))
		if i%1024 == 0 {
			sink = sink[:0]
		}
	}
	sink = nil
	deadline := time.Now().Add(5 * time.Second)
	for !g.maybe() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		if ms.NumGC > before.NumGC {
			// The runtime collected on its own meanwhile; allocate again.
			before = ms
			for i := 0; i < 1<<12; i++ {
				sink = append(sink, make([]byte, 4<<10))
			}
			sink = nil
		}
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
