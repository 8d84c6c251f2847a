package server

import (
	"cmp"
	"math"
	"slices"
	"sync"
	"time"
)

// recentSamples keeps the convergence times observed within the last
// window (at most max of them, the oldest dropped first), for the status
// page's p50/p99 "over the last minutes": the Prometheus histogram counts
// since start and cannot say what happened lately.
type recentSamples struct {
	window time.Duration
	max    int
	base   time.Time // samples' times are offsets from it

	mu   sync.Mutex
	ring []sample // at most max, oldest at next once full
	next int      // where the next sample goes, once ring is full
}

// sample is one convergence time, 16 bytes: a push to 1000 proxies makes
// 1000, and a time.Time and a float64 took twice that.
type sample struct {
	at     time.Duration // since base
	micros uint32        // the time converging, in microseconds (at most 71 minutes)
}

func newRecentSamples(window time.Duration, max int) *recentSamples {
	return &recentSamples{window: window, max: max, base: time.Now()}
}

// add records one observation made now. Once max are kept, each replaces
// the oldest.
func (r *recentSamples) add(seconds float64) {
	s := sample{at: time.Since(r.base), micros: uint32(min(max(math.Round(seconds*1e6), 0), math.MaxUint32))}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.ring) < r.max {
		if len(r.ring) == cap(r.ring) {
			// Grown by hand: append would pass max.
			r.ring = slices.Grow(r.ring, min(max(2*len(r.ring), 64), r.max)-len(r.ring))
		}
		r.ring = append(r.ring, s)
		return
	}
	r.ring[r.next] = s
	r.next = (r.next + 1) % r.max
}

// live returns a copy of the samples of the last window, oldest first.
func (r *recentSamples) live(now time.Duration) []sample {
	r.mu.Lock()
	out := make([]sample, 0, len(r.ring))
	out = append(append(out, r.ring[r.next:]...), r.ring[:r.next]...)
	r.mu.Unlock()
	i, _ := slices.BinarySearchFunc(out, now-r.window, func(s sample, t time.Duration) int { return cmp.Compare(s.at, t) })
	return out[i:]
}

// Quantiles are convergence times (seconds) observed over a span.
type Quantiles struct {
	Start time.Time `json:"start"` // the span's start
	Count int       `json:"count"`
	P50   float64   `json:"p50"`
	P99   float64   `json:"p99"`
}

// Convergence summarises the recent convergence times: over the whole
// window, and per step-long span ending now (oldest first), for a chart.
type Convergence struct {
	Window time.Duration `json:"window"`
	All    Quantiles     `json:"all"`
	Steps  []Quantiles   `json:"steps"`
}

// summary computes Convergence with spans of step.
func (r *recentSamples) summary(step time.Duration) Convergence {
	now := time.Now()
	since := now.Sub(r.base)
	samples := r.live(since)
	start := now.Add(-r.window)
	out := Convergence{Window: r.window, All: quantiles(start, samples)}
	for t := start; t.Before(now); t = t.Add(step) {
		from := t.Sub(r.base)
		lo, _ := slices.BinarySearchFunc(samples, from, func(s sample, t time.Duration) int { return cmp.Compare(s.at, t) })
		hi, _ := slices.BinarySearchFunc(samples, from+step, func(s sample, t time.Duration) int { return cmp.Compare(s.at, t) })
		out.Steps = append(out.Steps, quantiles(t, samples[lo:hi]))
	}
	return out
}

func quantiles(start time.Time, samples []sample) Quantiles {
	q := Quantiles{Start: start, Count: len(samples)}
	if len(samples) == 0 {
		return q
	}
	v := make([]float64, len(samples))
	for i, s := range samples {
		v[i] = float64(s.micros) / 1e6
	}
	slices.Sort(v)
	q.P50 = v[(len(v)-1)*50/100]
	q.P99 = v[(len(v)-1)*99/100]
	return q
}
