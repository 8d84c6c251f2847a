package loadtest

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
)

// memory reads RSS, its anonymous part and Go heap of the server.
func memory(p *process) (rss, anon, heap float64, err error) {
	if rss, anon, err = p.rssParts(); err != nil {
		return 0, 0, 0, err
	}
	heap, err = p.metric("go_memstats_heap_inuse_bytes")
	return rss, anon, heap, err
}

// liveHeap has the server collect its garbage and returns the heap its
// objects still use: what the server keeps, without the garbage that RSS
// and heap_inuse hold until the next collection, a swing of ±10 KB a proxy
// at S with the collector's phase. It reports false when the server has no
// pprof handler to ask (/debug/pprof/heap?gc=1 runs runtime.GC, which
// returns once the heap is swept). Two collections: what sync.Pools hold
// (gRPC's read buffers, several KB a proxy after a connect) survives one.
//
// Forced collections change what the runtime keeps resident (it may hand
// back the pages of the mesh's loading), so it is called only once RSS is
// measured: at the end of a run.
func liveHeap(p *process) (float64, bool) {
	for range 2 {
		resp, err := http.Get("http://" + p.httpAddr + "/debug/pprof/heap?gc=1")
		if err != nil {
			return 0, false
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return 0, false
		}
	}
	live, err := p.metric("go_memstats_heap_alloc_bytes")
	return live, err == nil
}

// proxyLiveHeap sets LiveHeapPerProxyKB, at the end of a run: the live heap
// with the fleet connected, then closes every proxy's connection (close),
// waits for the server to count none and reads it again. The difference is
// what the server frees when the proxies go: their connections and streams.
// What stays is not counted: the mesh's config built for them, and what
// our caches keep of a proxy's own config until the next change (the
// snapshot Builder's results, the versioned lists). Left 0 for a server
// that cannot be asked (pprof, the connected-proxies gauge).
func (r *Result) proxyLiveHeap(p *process, close func(), n int) {
	// The proxies have ACKed, but the server may still be reading their
	// ACKs: at L a SotW ACK names 10,000 clusters (about 500 KB), and the
	// bytes waiting in gRPC's buffers would count as what a proxy holds.
	waitIdle(p, 30*time.Second)
	connected, ok := liveHeap(p)
	if !ok {
		return
	}
	close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		left, err := p.connectedProxies()
		if err != nil {
			return
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	if none, ok := liveHeap(p); ok {
		r.LiveHeapPerProxyKB = (connected - none) / 1e3 / float64(n)
	}
}

// waitIdle waits, at most max, until the server uses under 2% of a core
// over a quarter of a second.
func waitIdle(p *process, max time.Duration) {
	const window = 250 * time.Millisecond
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		cpu0, err := p.cpuSeconds()
		if err != nil {
			return
		}
		time.Sleep(window)
		cpu1, err := p.cpuSeconds()
		if err != nil || cpu1-cpu0 < 0.02*window.Seconds() {
			return
		}
	}
}

// connect measures memory, connects the fleet, waits until every proxy is
// fully configured and measures memory again.
func (r *Result) connect(ctx context.Context, cfg Config, p *process, f *fleet) error {
	time.Sleep(time.Second)
	rss0, anon0, heap0, err := memory(p)
	if err != nil {
		return err
	}
	if cfg.ProfileDir != "" {
		// Live objects before the fleet connects, after RSS is read (the
		// profile collects first): the -base for the one after connecting.
		// That collection leaves less garbage for the after-connect figures,
		// so a profiled run's memory rows are not compared with a plain one's.
		if err := p.saveProfile("heap?gc=1", filepath.Join(cfg.ProfileDir, r.Server+"-"+r.Mode+"-heap-before.pb.gz")); err != nil {
			return err
		}
	}
	start := time.Now()
	ccs, err := f.run(ctx, p.grpcAddr, cfg.Conns)
	go func() { <-ctx.Done(); closeAll(ccs) }()
	if err != nil {
		return err
	}
	select {
	case <-f.allReady:
	case <-time.After(cfg.Timeout):
		return fmt.Errorf("only %d of %d proxies fully configured after %v", f.configuredN.Load(), len(f.specs), cfg.Timeout)
	}
	if f.err != nil {
		return f.err
	}
	r.ConnectSeconds = slices.MaxFunc(f.configured, func(a, b time.Time) int { return a.Compare(b) }).Sub(start).Seconds()
	fmt.Fprintf(cfg.Progress, "%s %s: %d proxies configured in %.2fs\n", r.Server, r.Mode, len(f.specs), r.ConnectSeconds)
	time.Sleep(2 * time.Second)
	rss1, anon1, heap1, err := memory(p)
	if err != nil {
		return err
	}
	peak, err := p.peakRSS()
	if err != nil {
		return err
	}
	fmt.Fprintf(cfg.Progress, "%s %s: after connect: %s\n", r.Server, r.Mode, memoryDetail(p))
	n := float64(len(f.specs))
	r.RSSBeforeMB, r.RSSAfterMB, r.PeakRSSMB, r.HeapBeforeMB, r.HeapAfterMB = rss0/1e6, rss1/1e6, peak/1e6, heap0/1e6, heap1/1e6
	r.RSSPerProxyKB, r.AnonRSSPerProxyKB, r.HeapPerProxyKB = (rss1-rss0)/1e3/n, (anon1-anon0)/1e3/n, (heap1-heap0)/1e3/n
	return nil
}

func closeAll(ccs []*grpc.ClientConn) {
	for _, cc := range ccs {
		cc.Close()
	}
}

// quiet is the pause before and after each change, so one change's
// pushes are not counted against the next.
const quiet = 300 * time.Millisecond

// recordedChange is a change and the encoded responses one proxy got for
// it from our server, which the bytes floor sends to every stream.
type recordedChange struct {
	change
	msgs [][]byte
}

// change applies each change and records convergence, CPU and bytes. With
// record set, it also keeps what the first proxy each change reaches
// received for it, for the bytes floor.
func (r *Result) change(ctx context.Context, cfg Config, p *process, f *fleet, changes []change, record bool) error {
	lat, count := map[string][]float64{}, map[string]int{}
	clientShare, bytesOf, upOf := map[string][]float64{}, map[string]float64{}, map[string]float64{}
	var cpu, bytes float64
	for _, c := range changes {
		// The load client collects its garbage now, not in the window: a
		// collection of its large heap (every proxy's state) started by
		// the change's allocations would stall its streams' reads and
		// ACKs, on the cores the server is measured on.
		runtime.GC()
		time.Sleep(quiet)
		cpu0, err := p.cpuSeconds()
		if err != nil {
			return err
		}
		b0, up0 := f.bytes.Load(), f.up.Load()
		pr := newProbe(f.specs, c.markers, c.seenBy)
		var rec *recording
		if record {
			if first := slices.Index(pr.expect, true); first >= 0 {
				rec = &recording{proxy: first}
				f.record.Store(rec)
			}
		}
		f.probe.Store(pr)
		client0, err := clientCPUSeconds()
		if err != nil {
			return err
		}
		pr.start = time.Now()
		if err := c.apply(); err != nil {
			return err
		}
		select {
		case <-pr.done:
		case <-time.After(cfg.Timeout):
			return fmt.Errorf("%s: %d of %d proxies did not ACK it within %v; server metrics:\n%s",
				c.what, pr.left.Load(), len(f.specs), cfg.Timeout, p.metricsText("controlplane_"))
		case <-ctx.Done():
			return ctx.Err()
		}
		window := time.Since(pr.start)
		client1, err := clientCPUSeconds()
		if err != nil {
			return err
		}
		share := (client1 - client0) / window.Seconds()
		clientShare[c.kind] = append(clientShare[c.kind], share)
		all, first, n := 0.0, math.Inf(1), 0
		for _, at := range pr.at {
			if at.IsZero() {
				continue // a proxy the change does not reach
			}
			n++
			d := at.Sub(pr.start).Seconds() * 1000
			lat[c.kind] = append(lat[c.kind], d)
			all, first = max(all, d), min(first, d)
		}
		time.Sleep(quiet)
		if rec != nil {
			f.record.Store(nil)
			r.recorded = append(r.recorded, recordedChange{change: c, msgs: rec.messages()})
		}
		cpu1, err := p.cpuSeconds()
		if err != nil {
			return err
		}
		cpu += cpu1 - cpu0
		bytes += float64(f.bytes.Load() - b0)
		bytesOf[c.kind] += float64(f.bytes.Load() - b0)
		upOf[c.kind] += float64(f.up.Load() - up0)
		count[c.kind]++
		fmt.Fprintf(cfg.Progress, "%s %s: %s: all %d proxies it reaches ACKed in %.0f ms (the first in %.0f ms); %d bytes to all %d, %d back; load client busy %.0f%% of a core (%.0f ms CPU)\n",
			r.Server, r.Mode, c.what, n, all, first, f.bytes.Load()-b0, len(f.specs), f.up.Load()-up0, share*100, (client1-client0)*1000)
	}
	if f.err != nil {
		return f.err
	}
	n := float64(len(changes))
	r.CPUPerChangeSeconds = cpu / n
	r.BytesPerProxyPerChange = bytes / n / float64(len(f.specs))
	r.Endpoint = summarize(lat[endpointChange], count[endpointChange])
	r.NewService = summarize(lat[newServiceChange], count[newServiceChange])
	if k := count[endpointChange]; k > 0 {
		r.BytesPerProxyEndpoint = bytesOf[endpointChange] / float64(k) / float64(len(f.specs))
		r.UpBytesPerProxyEndpoint = upOf[endpointChange] / float64(k) / float64(len(f.specs))
	}
	if k := count[newServiceChange]; k > 0 {
		r.BytesPerProxyNewService = bytesOf[newServiceChange] / float64(k) / float64(len(f.specs))
		r.UpBytesPerProxyNewService = upOf[newServiceChange] / float64(k) / float64(len(f.specs))
	}
	r.ClientCPUEndpoint = mean(clientShare[endpointChange])
	r.ClientCPUNewService = mean(clientShare[newServiceChange])
	return nil
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	sum := 0.0
	for _, x := range xs {
		sum += x
	}
	return sum / float64(len(xs))
}

// clientCPUSeconds is the load client's own user and system CPU time: the
// servers under test are other processes.
func clientCPUSeconds() (float64, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime), nil
}

// memoryDetail lists where the server's memory is, for the progress log.
func memoryDetail(p *process) string {
	var out []string
	for _, m := range []string{"go_memstats_heap_inuse_bytes", "go_memstats_heap_idle_bytes", "go_memstats_heap_released_bytes", "go_memstats_stack_inuse_bytes", "go_goroutines"} {
		v, err := p.metric(m)
		if err != nil {
			return err.Error()
		}
		if strings.HasSuffix(m, "_bytes") {
			out = append(out, fmt.Sprintf("%s %.1f MB", strings.TrimSuffix(strings.TrimPrefix(m, "go_memstats_"), "_bytes"), v/1e6))
		} else {
			out = append(out, fmt.Sprintf("%s %.0f", strings.TrimPrefix(m, "go_"), v))
		}
	}
	return strings.Join(out, ", ")
}
