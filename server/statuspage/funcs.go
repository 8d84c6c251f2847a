package statuspage

import (
	"fmt"
	"html/template"
	"strings"
	"time"

	"github.com/librarymesh/controlplane/server"
)

// funcs are the templates' helpers.
var funcs = template.FuncMap{
	"states":  func() []string { return allStates },
	"dur":     func(d time.Duration) string { return d.Round(time.Microsecond).String() },
	"secs":    secs,
	"chart":   chart,
	"rfc3339": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"day":     func(t time.Time) string { return t.UTC().Format("2006-01-02") },
	"clock":   func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"short":   shortVersion,
	"join":    strings.Join,
	"inc":     func(i int) int { return i + 1 },
	"dec":     func(i int) int { return i - 1 },
}

// secs formats seconds in ms, as the page's script does.
func secs(s float64) string { return fmt.Sprintf("%.1f ms", s*1000) }

// shortVersion is the first 12 characters of a version, as proxy-status shows.
func shortVersion(v string) string {
	if len(v) > 12 {
		return v[:12]
	}
	return v
}

// Chart geometry: one slot of two bars (p50, p99) per step.
const (
	chartHeight = 80
	slotWidth   = 24
)

// chart draws the per-step p50 and p99 as an inline SVG bar chart (no
// script needed), with a text alternative.
func chart(steps []server.Quantiles) template.HTML {
	top := 0.0
	for _, s := range steps {
		top = max(top, s.P99)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg role="img" width="%d" height="%d" viewBox="0 0 %d %d" aria-label="%s">`,
		slotWidth*len(steps), chartHeight, slotWidth*len(steps), chartHeight, template.HTMLEscapeString(chartLabel(steps)))
	for i, s := range steps {
		for j, v := range []float64{s.P50, s.P99} {
			h := 0
			if top > 0 {
				h = int(v / top * (chartHeight - 2))
			}
			fmt.Fprintf(&b, `<rect class="bar%d" x="%d" y="%d" width="9" height="%d"><title>%s p%s %s (%d ACKs)</title></rect>`,
				j, i*slotWidth+2+j*10, chartHeight-h, h, s.Start.UTC().Format("15:04"), []string{"50", "99"}[j], secs(v), s.Count)
		}
	}
	fmt.Fprintf(&b, `<line class="axis" x1="0" y1="%d" x2="%d" y2="%d"/></svg>`, chartHeight-1, slotWidth*len(steps), chartHeight-1)
	return template.HTML(b.String())
}

func chartLabel(steps []server.Quantiles) string {
	parts := make([]string, 0, len(steps))
	for _, s := range steps {
		if s.Count > 0 {
			parts = append(parts, fmt.Sprintf("%s p50 %s p99 %s", s.Start.UTC().Format("15:04"), secs(s.P50), secs(s.P99)))
		}
	}
	if len(parts) == 0 {
		return "no ACK of a change in this window"
	}
	return "convergence per minute: " + strings.Join(parts, "; ")
}
