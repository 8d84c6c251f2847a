package loadtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// SoakReport is what a soak measured.
type SoakReport struct {
	Scenario        Scenario       `json:"scenario"`
	Started         time.Time      `json:"started"`
	DurationSeconds float64        `json:"duration_seconds"`
	ConnectSeconds  float64        `json:"connect_seconds"`
	Proxies         int            `json:"proxies"`
	DeltaProxies    int            `json:"delta_proxies"`
	Churners        int            `json:"churners"`
	Nackers         int            `json:"nackers"`
	SlowReaders     int            `json:"slow_readers"`
	Changes         map[string]int `json:"changes"`
	ChangesTotal    int            `json:"changes_total"`
	// DroppedStreams counts streams the server ended (must be 0).
	DroppedStreams int64    `json:"dropped_streams"`
	Drops          []string `json:"drops,omitempty"`
	Reconnects     int64    `json:"reconnects"`
	Nacks          int64    `json:"nacks"`
	// Unconverged counts changes some proxy did not get within the
	// convergence timeout (must be 0).
	Unconverged int          `json:"unconverged"`
	Minutes     []SoakMinute `json:"minutes"`
	Samples     []SoakSample `json:"samples"`
	// Slopes fitted by least squares over the samples, per minute.
	HeapSlopeMBPerMin     float64 `json:"heap_slope_mb_per_min"`
	RSSSlopeMBPerMin      float64 `json:"rss_slope_mb_per_min"`
	GoroutineSlopePerMin  float64 `json:"goroutine_slope_per_min"`
	ServerCPUSeconds      float64 `json:"server_cpu_seconds"`
	ServerCPUCoresAverage float64 `json:"server_cpu_cores_avg"`
}

// SoakMinute is one minute of the changes.
type SoakMinute struct {
	Minute     int     `json:"minute"`
	Changes    int     `json:"changes"`
	P50Ms      float64 `json:"p50_ms"`
	P99Ms      float64 `json:"p99_ms"`
	MaxMs      float64 `json:"max_ms"`
	HeapMB     float64 `json:"heap_mb"`
	RSSMB      float64 `json:"rss_mb"`
	Goroutines float64 `json:"goroutines"`
	CPUCores   float64 `json:"cpu_cores"`
}

// SoakSample is the server's state at one moment.
type SoakSample struct {
	Minutes    float64 `json:"minutes"` // since the changes started
	HeapMB     float64 `json:"heap_mb"` // go_memstats_heap_inuse_bytes
	RSSMB      float64 `json:"rss_mb"`
	Goroutines float64 `json:"goroutines"`
	CPUSeconds float64 `json:"cpu_seconds"`
}

const sampleEvery = 5 * time.Second

// changeFor makes the changes for the configured duration while churners
// churn and NACKers reject, sampling the server, then waits for the last
// changes to converge.
func (sk *soak) changeFor(ctx context.Context, p *process, sm *soakMesh, rep *SoakReport) error {
	sk.start = time.Now()
	sk.churn.Store(true)
	for _, px := range sk.proxies {
		if px.nacker {
			time.AfterFunc(rand.N(sk.cfg.Duration/2), func() { px.nack.Store(true) })
		}
	}
	rep.Changes = map[string]int{}
	sample := func() error {
		s, err := sk.sample(p)
		rep.Samples = append(rep.Samples, s)
		return err
	}
	if err := sample(); err != nil {
		return err
	}
	tick := time.NewTicker(time.Second / time.Duration(sk.cfg.ChangesPerSecond))
	defer tick.Stop()
	lastSample, lastSweep, end := time.Now(), time.Now(), sk.start.Add(sk.cfg.Duration)
	for now := time.Now(); now.Before(end); now = time.Now() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		// Ticks a busy client missed are made up, so the rate holds.
		due := int(now.Sub(sk.start).Seconds()*float64(sk.cfg.ChangesPerSecond)) + 1
		for rep.ChangesTotal < due {
			if err := sk.makeChange(sm, rep); err != nil {
				return err
			}
		}
		if now.Sub(lastSweep) >= time.Second {
			sk.sweep(now)
			lastSweep = now
		}
		if now.Sub(lastSample) >= sampleEvery {
			if err := sample(); err != nil {
				return err
			}
			lastSample = now
			sk.progress(now, rep)
		}
	}
	sk.churn.Store(false)
	sk.drain(ctx)
	return sample()
}

// makeChange applies the next change and watches for it.
func (sk *soak) makeChange(sm *soakMesh, rep *SoakReport) error {
	c, apply := sm.next()
	c.watch(len(sk.proxies))
	c.at = time.Now()
	c.minute = int(c.at.Sub(sk.start) / time.Minute)
	sk.track(c)
	rep.Changes[c.kind]++
	rep.ChangesTotal++
	if err := apply(); err != nil {
		return fmt.Errorf("%s: %w", c.what, err)
	}
	return nil
}

// drain waits until every change made converged or timed out.
func (sk *soak) drain(ctx context.Context) {
	for sk.sweep(time.Now()) > 0 {
		sleep(ctx, 200*time.Millisecond)
		if ctx.Err() != nil {
			return
		}
	}
}

func (sk *soak) progress(now time.Time, rep *SoakReport) {
	sk.mu.Lock()
	unconverged := sk.unconvergedN
	sk.mu.Unlock()
	s := rep.Samples[len(rep.Samples)-1]
	fmt.Fprintf(sk.cfg.Progress, "soak: %s: %d changes, %d unconverged, %d streams dropped; heap %.0f MB, RSS %.0f MB, %.0f goroutines\n",
		now.Sub(sk.start).Round(time.Second), rep.ChangesTotal, unconverged, sk.dropped(), s.HeapMB, s.RSSMB, s.Goroutines)
}

func (sk *soak) dropped() int64 {
	var n int64
	for _, px := range sk.proxies {
		n += px.dropped.Load()
	}
	return n
}

// sample reads the server's memory, goroutines and CPU time.
func (sk *soak) sample(p *process) (SoakSample, error) {
	s := SoakSample{Minutes: time.Since(sk.start).Minutes()}
	rss, _, heap, err := memory(p)
	if err != nil {
		return s, err
	}
	s.RSSMB, s.HeapMB = rss/1e6, heap/1e6
	if s.Goroutines, err = p.metric("go_goroutines"); err != nil {
		return s, err
	}
	s.CPUSeconds, err = p.cpuSeconds()
	return s, err
}

// finish fills the report from the run.
func (sk *soak) finish(rep *SoakReport) {
	rep.DurationSeconds = sk.cfg.Duration.Seconds()
	rep.Proxies = len(sk.proxies)
	for _, px := range sk.proxies {
		rep.DroppedStreams += px.dropped.Load()
		rep.Reconnects += px.streams.Load() - 1
		rep.Nacks += px.nacked.Load()
		rep.DeltaProxies += b2i(px.delta)
		rep.Churners += b2i(px.churner)
		rep.Nackers += b2i(px.nacker)
		rep.SlowReaders += b2i(px.slow > 0)
	}
	sk.mu.Lock()
	defer sk.mu.Unlock()
	rep.Unconverged, rep.Drops = sk.unconvergedN, sk.drops
	rep.Minutes = minutes(rep.Samples, sk.lat, sk.changes, int((sk.cfg.Duration-1)/time.Minute))
	first, last := rep.Samples[0], rep.Samples[len(rep.Samples)-1]
	rep.ServerCPUSeconds = last.CPUSeconds - first.CPUSeconds
	rep.ServerCPUCoresAverage = rep.ServerCPUSeconds / ((last.Minutes - first.Minutes) * 60)
	rep.HeapSlopeMBPerMin = slope(rep.Samples, func(s SoakSample) float64 { return s.HeapMB })
	rep.RSSSlopeMBPerMin = slope(rep.Samples, func(s SoakSample) float64 { return s.RSSMB })
	rep.GoroutineSlopePerMin = slope(rep.Samples, func(s SoakSample) float64 { return s.Goroutines })
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// minutes makes the per-minute rows: convergence of the changes made in
// the minute, and the means of the samples taken in it.
// Samples after the last minute (while the last changes converge) count in it.
func minutes(samples []SoakSample, lat map[int][]float64, changes map[int]int, last int) []SoakMinute {
	var out []SoakMinute
	prevCPU, prevAt := samples[0].CPUSeconds, samples[0].Minutes
	for m := 0; ; m++ {
		var in []SoakSample
		for _, s := range samples {
			if min(int(s.Minutes), last) == m {
				in = append(in, s)
			}
		}
		if len(in) == 0 {
			return out
		}
		row := SoakMinute{Minute: m + 1, Changes: changes[m]}
		if c := summarize(slices.Clone(lat[m]), changes[m]); c.Changes > 0 {
			row.P50Ms, row.P99Ms, row.MaxMs = c.P50Ms, c.P99Ms, c.MaxMs
		}
		for _, s := range in {
			row.HeapMB += s.HeapMB / float64(len(in))
			row.RSSMB += s.RSSMB / float64(len(in))
			row.Goroutines += s.Goroutines / float64(len(in))
		}
		lastS := in[len(in)-1]
		if lastS.Minutes > prevAt {
			row.CPUCores = (lastS.CPUSeconds - prevCPU) / ((lastS.Minutes - prevAt) * 60)
		}
		prevCPU, prevAt = lastS.CPUSeconds, lastS.Minutes
		out = append(out, row)
	}
}

// slope fits y = a + b*minutes by least squares and returns b.
func slope(samples []SoakSample, y func(SoakSample) float64) float64 {
	n := float64(len(samples))
	if n < 2 {
		return 0
	}
	var sx, sy, sxx, sxy float64
	for _, s := range samples {
		x, v := s.Minutes, y(s)
		sx, sy, sxx, sxy = sx+x, sy+v, sxx+x*x, sxy+x*v
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}

// WriteTable writes the soak's table.
func (r *SoakReport) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "soak: %d services, %d proxies (%d delta, %d churning, %d NACKing once, %d slow readers), %.0fs of changes (%d: %s)\n\n",
		r.Scenario.Services, r.Proxies, r.DeltaProxies, r.Churners, r.Nackers, r.SlowReaders, r.DurationSeconds, r.ChangesTotal, kinds(r.Changes))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "minute\tchanges\tconv p50 ms\tconv p99 ms\tconv max ms\theap MB\tRSS MB\tgoroutines\tserver CPU cores\t")
	for _, m := range r.Minutes {
		fmt.Fprintf(tw, "%d\t%d\t%.0f\t%.0f\t%.0f\t%.1f\t%.1f\t%.0f\t%.2f\t\n", m.Minute, m.Changes, m.P50Ms, m.P99Ms, m.MaxMs, m.HeapMB, m.RSSMB, m.Goroutines, m.CPUCores)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\nstreams dropped by the server: %d\nunconverged changes: %d\nreconnects: %d, NACKs sent: %d\n"+
		"heap slope: %+.2f MB/min, RSS slope: %+.2f MB/min, goroutine slope: %+.1f/min (least squares over %d samples)\n"+
		"server CPU: %.1f s (%.2f cores on average)\n",
		r.DroppedStreams, r.Unconverged, r.Reconnects, r.Nacks, r.HeapSlopeMBPerMin, r.RSSSlopeMBPerMin, r.GoroutineSlopePerMin,
		len(r.Samples), r.ServerCPUSeconds, r.ServerCPUCoresAverage)
	for _, d := range r.Drops {
		fmt.Fprintf(w, "dropped: %s\n", d)
	}
	return err
}

func kinds(m map[string]int) string {
	var out []string
	for _, k := range []string{soakEndpoint, soakPolicy, soakNew, soakRemoved} {
		out = append(out, fmt.Sprintf("%d %s", m[k], k))
	}
	return strings.Join(out, ", ")
}

// WriteJSON writes the report to path.
func (r *SoakReport) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write soak report: %w", err)
	}
	return nil
}
