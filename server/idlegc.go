package server

import (
	"runtime"
	rtmetrics "runtime/metrics"
	"sync/atomic"
	"time"
)

// idleGCAfter is how long the server must be quiet (no push, no request
// from a proxy) before idleGC looks at the heap; the push loop ticks it at
// this period.
const idleGCAfter = 200 * time.Millisecond

// idleGC starts a garbage collection in a quiet spell, when the heap is
// past halfway from its live size to the goal that triggers the next
// collection. That collection would come soon anyway, and if it came during
// a push it would slow that push (on two cores a cycle of a 100 MB heap
// takes 100-300 ms); now it runs while nothing is being pushed. A spell is
// quiet once a tick finds that no push happened and no request came since
// the tick before: after a push the proxies' ACKs still come, and after a
// fleet connects (which leaves garbage too, with no push at all) their
// first responses and ACKs go on for seconds after the last connection.
// Under a steady stream of changes there is no quiet spell and the runtime
// collects as usual.
type idleGC struct {
	running atomic.Bool
	checks  atomic.Int64 // calls of maybe: quiet spells seen

	requests func() uint64 // requests read so far, by every stream
	seen     uint64        // requests at the last tick
	checked  bool          // the current quiet spell was checked
	samples  []rtmetrics.Sample
}

// newIdleGC returns an idleGC that counts the proxies' requests with requests.
func newIdleGC(requests func() uint64) *idleGC {
	return &idleGC{requests: requests, samples: []rtmetrics.Sample{
		{Name: "/gc/heap/live:bytes"},
		{Name: "/gc/heap/goal:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
	}}
}

// pushed starts a new spell: the quiet after it gets a check of its own.
func (g *idleGC) pushed() {
	g.seen, g.checked = g.requests(), false
}

// tick is the push loop's, every idleGCAfter: the first tick of a quiet
// spell checks the heap (maybe).
func (g *idleGC) tick() {
	if n := g.requests(); n != g.seen {
		g.seen, g.checked = n, false
		return
	}
	if !g.checked {
		g.checked = true
		g.maybe()
	}
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
