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
	Server                 string      `json:"server"`
	Mode                   string      `json:"mode"`
	Proxies                int         `json:"proxies"`
	Services               int         `json:"services"`
	ConnectSeconds         float64     `json:"connect_and_configure_seconds"`
	RSSBeforeMB            float64     `json:"rss_before_mb"`
	RSSAfterMB             float64     `json:"rss_after_mb"`
	HeapBeforeMB           float64     `json:"heap_before_mb"`
	HeapAfterMB            float64     `json:"heap_after_mb"`
	RSSPerProxyKB          float64     `json:"rss_per_proxy_kb"`
	HeapPerProxyKB         float64     `json:"heap_per_proxy_kb"`
	Endpoint               Convergence `json:"endpoint_change"`
	NewService             Convergence `json:"new_service_change"`
	CPUPerChangeSeconds    float64     `json:"cpu_seconds_per_change"`
	BytesPerProxyPerChange float64     `json:"bytes_per_proxy_per_change"`
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
}

var rows = []row{
	{"connect+configure all proxies", func(r *Result) float64 { return r.ConnectSeconds }, "s"},
	{"endpoint change convergence p50", func(r *Result) float64 { return r.Endpoint.P50Ms }, "ms"},
	{"endpoint change convergence p99", func(r *Result) float64 { return r.Endpoint.P99Ms }, "ms"},
	{"endpoint change convergence max", func(r *Result) float64 { return r.Endpoint.MaxMs }, "ms"},
	{"new service convergence p50", func(r *Result) float64 { return r.NewService.P50Ms }, "ms"},
	{"new service convergence p99", func(r *Result) float64 { return r.NewService.P99Ms }, "ms"},
	{"new service convergence max", func(r *Result) float64 { return r.NewService.MaxMs }, "ms"},
	{"server RSS before connect", func(r *Result) float64 { return r.RSSBeforeMB }, "MB"},
	{"server RSS after connect", func(r *Result) float64 { return r.RSSAfterMB }, "MB"},
	{"server RSS per proxy", func(r *Result) float64 { return r.RSSPerProxyKB }, "KB"},
	{"Go heap before connect", func(r *Result) float64 { return r.HeapBeforeMB }, "MB"},
	{"Go heap after connect", func(r *Result) float64 { return r.HeapAfterMB }, "MB"},
	{"Go heap per proxy", func(r *Result) float64 { return r.HeapPerProxyKB }, "KB"},
	{"server CPU per change", func(r *Result) float64 { return r.CPUPerChangeSeconds }, "s"},
	{"bytes sent per proxy per change", func(r *Result) float64 { return r.BytesPerProxyPerChange }, "B"},
}

// WriteTable prints, per mode, our server, the baseline and the ratio
// baseline/ours (how many times better ours is; higher is better).
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "scenario: %d services, %d proxies; %d endpoint changes, %d new services%s\t\t\t\t\n",
		r.Scenario.Services, r.Scenario.Proxies, r.Scenario.EndpointChanges, r.Scenario.NewServiceChanges, scopeNote(r.Scenario))
	modes := []string{}
	for _, res := range r.Results {
		if !slices.Contains(modes, res.Mode) {
			modes = append(modes, res.Mode)
		}
	}
	for _, mode := range modes {
		ours, base := r.find(Ours, mode), r.find(Baseline, mode)
		fmt.Fprintf(tw, "\n%s\tours\tbaseline\tbaseline/ours\t\n", mode)
		for _, rw := range rows {
			fmt.Fprintf(tw, "%s (%s)\t%s\t%s\t%s\t\n", rw.label, rw.unit, cellValue(ours, rw), cellValue(base, rw), ratio(ours, base, rw))
		}
	}
	return tw.Flush()
}

func cellValue(r *Result, rw row) string {
	if r == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f", rw.get(r))
}

func ratio(ours, base *Result, rw row) string {
	if ours == nil || base == nil || rw.get(ours) <= 0 || rw.get(base) <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fx", rw.get(base)/rw.get(ours))
}
