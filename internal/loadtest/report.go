package loadtest

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"text/tabwriter"
	"time"
)

// Convergence is the time from a change written to the folder to each
// affected proxy ACKing a response that carries it, over every (change,
// proxy) pair.
type Convergence struct {
	Changes int     `json:"changes"`
	P50Ms   float64 `json:"p50_ms"`
	P99Ms   float64 `json:"p99_ms"`
	MaxMs   float64 `json:"max_ms"`
}

// Result is one server in one mode.
type Result struct {
	Server                  string      `json:"server"`
	Mode                    string      `json:"mode"`
	Proxies                 int         `json:"proxies"`
	Services                int         `json:"services"`
	ConnectSeconds          float64     `json:"connect_and_configure_seconds"`
	RSSBeforeMB             float64     `json:"rss_before_mb"`
	RSSAfterMB              float64     `json:"rss_after_mb"`
	PeakRSSMB               float64     `json:"peak_rss_mb"` // the most the server held resident (VmHWM) by the time RSSAfterMB is read: loading the mesh, the fleet's connecting
	HeapBeforeMB            float64     `json:"heap_before_mb"`
	HeapAfterMB             float64     `json:"heap_after_mb"`
	RSSPerProxyKB           float64     `json:"rss_per_proxy_kb"`
	AnonRSSPerProxyKB       float64     `json:"anon_rss_per_proxy_kb"` // RSSPerProxyKB without file pages (the binary's code and data)
	HeapPerProxyKB          float64     `json:"heap_per_proxy_kb"`
	LiveHeapPerProxyKB      float64     `json:"live_heap_per_proxy_kb,omitempty"` // held by the connected proxies (see proxyLiveHeap); 0: the server could not be asked
	Endpoint                Convergence `json:"endpoint_change"`
	NewService              Convergence `json:"new_service_change"`
	CPUPerChangeSeconds     float64     `json:"cpu_seconds_per_change"`
	BytesPerProxyPerChange  float64     `json:"bytes_per_proxy_per_change"`
	BytesPerProxyEndpoint   float64     `json:"bytes_per_proxy_endpoint_change"`
	BytesPerProxyNewService float64     `json:"bytes_per_proxy_new_service"`
	// Up: what the proxies send back (ACKs and new subscriptions); a SotW
	// ACK names every resource the proxy subscribes to, as Envoy's do.
	UpBytesPerProxyEndpoint   float64 `json:"up_bytes_per_proxy_endpoint_change"`
	UpBytesPerProxyNewService float64 `json:"up_bytes_per_proxy_new_service"`
	// ClientCPUEndpoint and ClientCPUNewService are the load client's CPU
	// time over the wall time of a change's window (written to every proxy
	// ACKed), averaged over the changes of the kind: 1 is one core busy
	// for the whole window.
	ClientCPUEndpoint   float64 `json:"client_cpu_cores_endpoint_change"`
	ClientCPUNewService float64 `json:"client_cpu_cores_new_service_change"`
	// ColdStartSeconds is the server's exec to /readyz 200, with the mesh
	// already in its folder.
	ColdStartSeconds float64 `json:"cold_start_seconds"`

	recorded []recordedChange // ours: what one proxy got per change
	// connected is what that proxy got until it was configured (ours):
	// the floor sends it to every stream first, so the floor's
	// proxies hold the same subscriptions and ACK with as many names.
	connected [][]byte
	specs     []ProxySpec
}

// Report is a whole run.
type Report struct {
	Scenario Scenario  `json:"scenario"`
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`
	Results  []Result  `json:"results"`
}

func summarize(ms []float64, changes int) Convergence {
	if len(ms) == 0 {
		return Convergence{}
	}
	slices.Sort(ms)
	pct := func(q float64) float64 { return ms[int(math.Ceil(q*float64(len(ms))))-1] }
	return Convergence{Changes: changes, P50Ms: pct(0.50), P99Ms: pct(0.99), MaxMs: ms[len(ms)-1]}
}

// WriteJSON writes the report to path.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// find returns the result of a server in a mode.
func (r *Report) find(server, mode string) *Result {
	for i := range r.Results {
		if r.Results[i].Server == server && r.Results[i].Mode == mode {
			return &r.Results[i]
		}
	}
	return nil
}

// row is one line of the table: a label and how to read it from a Result.
type row struct {
	label string
	get   func(*Result) float64
	unit  string
	// floor marks what the bytes floor measures too (it translates,
	// stores and configures nothing).
	floor bool
	// noRatio marks figures of the load client, not of the server.
	noRatio bool
	// optional marks figures a server may not give: 0 is shown as "-".
	optional bool
}

var rows = []row{
	{label: "connect+configure all proxies", get: func(r *Result) float64 { return r.ConnectSeconds }, unit: "s"},
	{label: "endpoint change convergence p50", get: func(r *Result) float64 { return r.Endpoint.P50Ms }, unit: "ms", floor: true},
	{label: "endpoint change convergence p99", get: func(r *Result) float64 { return r.Endpoint.P99Ms }, unit: "ms", floor: true},
	{label: "endpoint change convergence max", get: func(r *Result) float64 { return r.Endpoint.MaxMs }, unit: "ms", floor: true},
	{label: "new service convergence p50", get: func(r *Result) float64 { return r.NewService.P50Ms }, unit: "ms", floor: true},
	{label: "new service convergence p99", get: func(r *Result) float64 { return r.NewService.P99Ms }, unit: "ms", floor: true},
	{label: "new service convergence max", get: func(r *Result) float64 { return r.NewService.MaxMs }, unit: "ms", floor: true},
	{label: "server RSS before connect", get: func(r *Result) float64 { return r.RSSBeforeMB }, unit: "MB"},
	{label: "server RSS after connect", get: func(r *Result) float64 { return r.RSSAfterMB }, unit: "MB"},
	{label: "server peak RSS up to then (VmHWM)", get: func(r *Result) float64 { return r.PeakRSSMB }, unit: "MB"},
	{label: "server RSS per proxy", get: func(r *Result) float64 { return r.RSSPerProxyKB }, unit: "KB"},
	{label: "of it anonymous (not the binary's pages)", get: func(r *Result) float64 { return r.AnonRSSPerProxyKB }, unit: "KB"},
	{label: "Go heap before connect", get: func(r *Result) float64 { return r.HeapBeforeMB }, unit: "MB"},
	{label: "Go heap after connect", get: func(r *Result) float64 { return r.HeapAfterMB }, unit: "MB"},
	{label: "Go heap per proxy", get: func(r *Result) float64 { return r.HeapPerProxyKB }, unit: "KB"},
	{label: "Go live heap a connected proxy holds", get: func(r *Result) float64 { return r.LiveHeapPerProxyKB }, unit: "KB", optional: true},
	{label: "server CPU per change", get: func(r *Result) float64 { return r.CPUPerChangeSeconds }, unit: "s", floor: true},
	{label: "bytes sent per proxy per change", get: func(r *Result) float64 { return r.BytesPerProxyPerChange }, unit: "B", floor: true},
	{label: "bytes per proxy, endpoint change", get: func(r *Result) float64 { return r.BytesPerProxyEndpoint }, unit: "B", floor: true},
	{label: "bytes per proxy, new service", get: func(r *Result) float64 { return r.BytesPerProxyNewService }, unit: "B", floor: true},
	{label: "bytes back per proxy (ACKs), endpoint change", get: func(r *Result) float64 { return r.UpBytesPerProxyEndpoint }, unit: "B", floor: true},
	{label: "bytes back per proxy (ACKs), new service", get: func(r *Result) float64 { return r.UpBytesPerProxyNewService }, unit: "B", floor: true},
	{label: "load client CPU, endpoint change window", get: func(r *Result) float64 { return r.ClientCPUEndpoint }, unit: "cores", floor: true, noRatio: true},
	{label: "load client CPU, new service window", get: func(r *Result) float64 { return r.ClientCPUNewService }, unit: "cores", floor: true, noRatio: true},
	{label: "exec to /readyz 200 (mesh in folder)", get: func(r *Result) float64 { return r.ColdStartSeconds }, unit: "s"},
}

// clientBound is the load client's CPU share of a change window above
// which a convergence figure measures the client as much as the server:
// on 2 cores shared with the server, half a core is most of what the
// client can have while the server works.
const clientBound = 0.5

// WriteTable prints, per mode, our server, the baseline and the ratio
// baseline/ours (how many times better ours is; higher is better), where
// it ran istiod and istiod/ours (likewise) and, where it ran, the bytes floor and ours/floor (how many times the floor's
// cost ours is; 1 is the floor). Figures measured while the load client
// was busy for most of a change window are marked client-bound.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "scenario: %d services, %d proxies; %d endpoint changes, %d new services%s%s\t\t\t\t\n",
		r.Scenario.Services, r.Scenario.Proxies, r.Scenario.EndpointChanges, r.Scenario.NewServiceChanges, scopeNote(r.Scenario), httpNote(r.Scenario))
	var modes []string
	for _, res := range r.Results {
		if !slices.Contains(modes, res.Mode) {
			modes = append(modes, res.Mode)
		}
	}
	var notes []string
	for _, mode := range modes {
		ours, base, floor, istiod := r.find(Ours, mode), r.find(Baseline, mode), r.find(Floor, mode), r.find(Istiod, mode)
		fmt.Fprintf(tw, "\n%s\tours\tbaseline\tbaseline/ours\t", mode)
		if istiod != nil {
			fmt.Fprint(tw, "istiod\tistiod/ours\t")
		}
		if floor != nil {
			fmt.Fprint(tw, "bytes floor\tours/floor\t")
		}
		fmt.Fprintln(tw)
		for _, rw := range rows {
			fmt.Fprintf(tw, "%s (%s)\t%s\t%s\t%s\t", rw.label, rw.unit, cellValue(ours, rw), cellValue(base, rw), ratio(ours, base, rw))
			if istiod != nil {
				fmt.Fprintf(tw, "%s\t%s\t", cellValue(istiod, rw), ratio(ours, istiod, rw))
			}
			if floor != nil {
				f := floor
				if !rw.floor {
					f = nil
				}
				fmt.Fprintf(tw, "%s\t%s\t", cellValue(f, rw), ratio(f, ours, rw))
			}
			fmt.Fprintln(tw)
		}
		for _, res := range []*Result{ours, base, istiod, floor} {
			if res != nil {
				notes = append(notes, clientBoundNotes(res)...)
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range notes {
		fmt.Fprintln(w, n)
	}
	return nil
}

// clientBoundNotes says which of res's convergence figures are client-bound.
func clientBoundNotes(res *Result) []string {
	var out []string
	for _, k := range []struct {
		what  string
		share float64
	}{{"endpoint", res.ClientCPUEndpoint}, {"new service", res.ClientCPUNewService}} {
		if k.share > clientBound {
			out = append(out, fmt.Sprintf("client-bound: %s %s %s convergence (the load client used %.2f cores during the window, over %.1f)",
				res.Server, res.Mode, k.what, k.share, clientBound))
		}
	}
	return out
}

// httpNote describes the HTTP ServiceEntry scenario in the table's title.
func httpNote(sc Scenario) string {
	if !sc.HTTPEntries {
		return ""
	}
	return fmt.Sprintf("; every service an HTTP ServiceEntry on %d without addresses", httpEntryPort)
}

func cellValue(r *Result, rw row) string {
	if r == nil || rw.optional && rw.get(r) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", rw.get(r))
}

func ratio(ours, base *Result, rw row) string {
	if rw.noRatio || ours == nil || base == nil || rw.get(ours) <= 0 || rw.get(base) <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fx", rw.get(base)/rw.get(ours))
}
