package server

import (
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

	mu      sync.Mutex
	samples []sample // oldest first, from head on
	head    int      // samples before it are dropped
}

type sample struct {
	at      time.Time
	seconds float64
}

func newRecentSamples(window time.Duration, max int) *recentSamples {
	return &recentSamples{window: window, max: max}
}

// add records one observation made now.
func (r *recentSamples) add(seconds float64) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.samples = append(r.samples, sample{now, seconds})
	r.dropLocked(now)
}

// dropLocked forgets samples older than the window and beyond max. They
// are skipped, and the slice compacted only once half of it is skipped, so
// a sample costs O(1) even when one leaves for every one that comes (a
// full buffer, or a steady rate over the window).
func (r *recentSamples) dropLocked(now time.Time) {
	for r.head < len(r.samples) && now.Sub(r.samples[r.head].at) > r.window {
		r.head++
	}
	r.head = max(r.head, len(r.samples)-r.max)
	if r.head > 0 && r.head >= len(r.samples)/2 {
		n := copy(r.samples, r.samples[r.head:])
		r.samples, r.head = r.samples[:n], 0
	}
}

// liveLocked returns the samples kept.
func (r *recentSamples) liveLocked() []sample { return r.samples[r.head:] }

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
	r.mu.Lock()
	r.dropLocked(now)
	samples := slices.Clone(r.liveLocked())
	r.mu.Unlock()
	start := now.Add(-r.window)
	out := Convergence{Window: r.window, All: quantiles(start, samples)}
	for t := start; t.Before(now); t = t.Add(step) {
		lo, _ := slices.BinarySearchFunc(samples, t, func(s sample, t time.Time) int { return s.at.Compare(t) })
		hi, _ := slices.BinarySearchFunc(samples, t.Add(step), func(s sample, t time.Time) int { return s.at.Compare(t) })
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
		v[i] = s.seconds
	}
	slices.Sort(v)
	q.P50 = v[(len(v)-1)*50/100]
	q.P99 = v[(len(v)-1)*99/100]
	return q
}
