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
	samples []sample // oldest first
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

// dropLocked forgets samples older than the window and beyond max.
func (r *recentSamples) dropLocked(now time.Time) {
	cut := 0
	for cut < len(r.samples) && now.Sub(r.samples[cut].at) > r.window {
		cut++
	}
	cut = max(cut, len(r.samples)-r.max)
	if cut > 0 {
		r.samples = slices.Delete(r.samples, 0, cut)
	}
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
	r.mu.Lock()
	r.dropLocked(now)
	samples := slices.Clone(r.samples)
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
