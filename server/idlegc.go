package server

import (
	"runtime"
	rtmetrics "runtime/metrics"
	"sync/atomic"
	"time"
)

// idleGCAfter is how long the push loop must be quiet (no push, no proxy
// connecting) before idleGC runs.
const idleGCAfter = 200 * time.Millisecond

// idleGC starts a garbage collection in a quiet spell after a push or a
// proxy's connection (a fleet connecting leaves garbage too), when
// the heap is past halfway from its live size to the goal that triggers the
// next collection. That collection would come soon anyway, and if it came
// during a push it would slow that push (on two cores a cycle of a 100 MB
// heap takes 100-300 ms); now it runs while nothing is being pushed. Under
// a steady stream of changes there is no quiet spell and the runtime
// collects as usual.
type idleGC struct {
	running atomic.Bool
	checks  atomic.Int64 // calls of maybe: quiet spells seen
	samples []rtmetrics.Sample
}

func newIdleGC() *idleGC {
	return &idleGC{samples: []rtmetrics.Sample{
		{Name: "/gc/heap/live:bytes"},
		{Name: "/gc/heap/goal:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
	}}
}

// maybe starts a collection if the heap is past halfway to its goal. It
// reports whether it started one.
func (g *idleGC) maybe() bool {
	g.checks.Add(1)
	if g.running.Load() {
		return false
	}
	rtmetrics.Read(g.samples)
	live, goal, now := g.samples[0].Value.Uint64(), g.samples[1].Value.Uint64(), g.samples[2].Value.Uint64()
	if goal <= live || now < live+(goal-live)/2 {
		return false
	}
	g.running.Store(true)
	go func() {
		defer g.running.Store(false)
		runtime.GC()
	}()
	return true
}
