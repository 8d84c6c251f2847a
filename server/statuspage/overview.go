package statuspage

import (
	"cmp"
	"crypto/x509"
	"encoding/pem"
	"maps"
	"slices"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/librarymesh/controlplane/server"
)

// Metric names the overview reads from the CA's counters.
const (
	issuedMetric  = "controlplane_ca_certificates_issued_total"
	refusedMetric = "controlplane_ca_refusals_total"
)

// sourceState is a registry source and whether it has loaded.
type sourceState struct {
	Name   string `json:"name"`
	Synced bool   `json:"synced"`
}

// kindCount is how many proxies of a kind are connected.
type kindCount struct {
	Kind  string `json:"kind"`
	Count int    `json:"count"`
}

// caSummary is the CA's root and how many certificates it issued and refused.
type caSummary struct {
	Subject  string    `json:"subject"`
	NotAfter time.Time `json:"notAfter"`
	Issued   float64   `json:"issued"`
	Refused  float64   `json:"refused"`
	Error    string    `json:"error,omitempty"`
}

// overviewData is the overview.
type overviewData struct {
	Version     string             `json:"version"`
	Replica     string             `json:"replica"`
	StartedAt   time.Time          `json:"startedAt"`
	Uptime      string             `json:"uptime"`
	Sources     []sourceState      `json:"sources"`
	Revision    uint64             `json:"revision"`
	Services    int                `json:"services"`
	Endpoints   int                `json:"endpoints"`
	Ready       int                `json:"readyEndpoints"`
	Proxies     int                `json:"proxies"`
	ByKind      []kindCount        `json:"byKind"`
	ByState     map[string]int     `json:"byState"`
	Problems    int                `json:"problems"`
	Pushes      int64              `json:"pushes"`
	LastPush    server.Push        `json:"lastPush"`
	LastPushAgo string             `json:"lastPushAgo"`
	Convergence server.Convergence `json:"convergence"`
	CA          *caSummary         `json:"ca,omitempty"`
}

func (p *Page) overview() overviewData {
	st := p.cfg.Server.Stats()
	now := time.Now()
	o := overviewData{
		Version: p.cfg.Version, Replica: p.cfg.Replica, StartedAt: st.StartedAt,
		Uptime: now.Sub(st.StartedAt).Round(time.Second).String(), Pushes: st.Pushes,
		LastPush: st.LastPush, Convergence: st.Convergence, ByState: map[string]int{},
		Problems: len(p.cfg.Server.Problems()),
	}
	if !st.LastPush.At.IsZero() {
		o.LastPushAgo = now.Sub(st.LastPush.At).Round(time.Second).String() + " ago"
	}
	for _, s := range p.cfg.Sources {
		o.Sources = append(o.Sources, sourceState{Name: s.Name, Synced: s.Synced()})
	}
	v := p.cfg.Model.View()
	o.Revision = v.Revision()
	for _, svc := range v.Services() {
		o.Services++
		for _, ep := range v.Endpoints(svc.Hostname) {
			o.Endpoints++
			if ep.Ready {
				o.Ready++
			}
		}
	}
	kinds := map[string]int{}
	o.ByKind = []kindCount{}
	for _, r := range p.allProxies() {
		o.Proxies++
		kinds[cmp.Or(r.Kind, "unknown")]++
		o.ByState[r.State]++
	}
	for _, k := range slices.Sorted(maps.Keys(kinds)) {
		o.ByKind = append(o.ByKind, kindCount{k, kinds[k]})
	}
	o.CA = p.ca()
	return o
}

// ca reads the root certificate and the CA's counters, or nil without a CA.
func (p *Page) ca() *caSummary {
	if p.cfg.RootPEM == nil {
		return nil
	}
	c := &caSummary{}
	block, _ := pem.Decode(p.cfg.RootPEM())
	if block == nil {
		c.Error = "the root certificate is not PEM"
		return c
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		c.Error = "root certificate: " + err.Error()
		return c
	}
	c.Subject, c.NotAfter = cert.Subject.String(), cert.NotAfter
	if p.cfg.Gatherer == nil {
		return c
	}
	families, err := p.cfg.Gatherer.Gather()
	if err != nil {
		c.Error = "metrics: " + err.Error()
	}
	for _, f := range families {
		switch f.GetName() {
		case issuedMetric:
			c.Issued = sum(f)
		case refusedMetric:
			c.Refused = sum(f)
		}
	}
	return c
}

// sum adds a counter family's samples over all label values.
func sum(f *dto.MetricFamily) float64 {
	total := 0.0
	for _, m := range f.GetMetric() {
		total += m.GetCounter().GetValue()
	}
	return total
}
