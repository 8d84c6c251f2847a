package server

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the server's Prometheus metrics, on a registry of their own.
type metrics struct {
	reg          *prometheus.Registry
	proxies      *prometheus.GaugeVec   // kind
	pushes       *prometheus.CounterVec // type
	resources    *prometheus.CounterVec // type
	nacks        *prometheus.CounterVec // type
	builds       prometheus.Counter     // snapshot builds
	buildErrors  prometheus.Counter     // failed snapshot builds
	buildSeconds prometheus.Histogram   // one Build
	pushSeconds  prometheus.Histogram   // one whole rebuild of affected proxies
	debounce     prometheus.Histogram   // first change -> rebuild start
	convergence  prometheus.Histogram   // change observed -> proxy ACKed it
	rejected     *prometheus.CounterVec // reason (malformed node)

	// pushes and resources by typeIndex, resolved once: a push to a
	// thousand proxies would otherwise hash the label twice per response.
	pushesOf, resourcesOf [numTypes]prometheus.Counter
}

const ns = "controlplane"

// newMetrics registers the server's metrics, the registry's, and Go
// runtime and process metrics unless already there, on reg (a new
// registry when nil).
func newMetrics(reg *prometheus.Registry, model Registry) (*metrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &metrics{reg: reg}
	m.proxies = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "xds_connected_proxies", Help: "Connected proxies by kind."}, []string{"kind"})
	m.pushes = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "xds_pushes_total", Help: "xDS responses sent, by type."}, []string{"type"})
	m.resources = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "xds_resources_sent_total", Help: "Resources sent in xDS responses, by type."}, []string{"type"})
	m.nacks = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "xds_nacks_total", Help: "NACKs received, by type."}, []string{"type"})
	m.builds = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "snapshot_builds_total", Help: "Proxy snapshots built."})
	m.buildErrors = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "snapshot_build_errors_total", Help: "Proxy snapshot builds that failed."})
	buckets := prometheus.ExponentialBuckets(0.0005, 2, 16)
	m.buildSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "snapshot_build_seconds", Help: "Time to build one proxy's snapshot.", Buckets: buckets})
	m.pushSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "push_seconds", Help: "Time to rebuild and set the snapshots of all affected proxies after a change.", Buckets: buckets})
	m.debounce = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "debounce_wait_seconds", Help: "Time from the first change of a batch to the start of its rebuild.", Buckets: buckets})
	m.convergence = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "convergence_seconds", Help: "Time from a registry change being observed to an affected proxy ACKing the version containing it.", Buckets: buckets})
	m.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "xds_streams_rejected_total", Help: "xDS streams ended by the server, by reason."}, []string{"reason"})
	for i, short := range shortTypes {
		m.pushesOf[i], m.resourcesOf[i] = m.pushes.WithLabelValues(short), m.resources.WithLabelValues(short)
	}
	for _, c := range []prometheus.Collector{m.proxies, m.pushes, m.resources, m.nacks, m.builds, m.buildErrors,
		m.buildSeconds, m.pushSeconds, m.debounce, m.convergence, m.rejected, newRegistryCollector(model)} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register server metrics: %w", err)
		}
	}
	for _, c := range []prometheus.Collector{collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := reg.Register(c); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
			return nil, fmt.Errorf("register runtime metrics: %w", err)
		}
	}
	return m, nil
}

// registryCollector reports the registry's objects by kind and its
// problems, read from the registry at scrape time.
type registryCollector struct {
	reg      Registry
	objects  *prometheus.Desc
	problems *prometheus.Desc
}

func newRegistryCollector(reg Registry) *registryCollector {
	return &registryCollector{
		reg:      reg,
		objects:  prometheus.NewDesc(ns+"_registry_objects", "Objects in the registry model, by kind.", []string{"kind"}, nil),
		problems: prometheus.NewDesc(ns+"_config_errors", "Input the registry could not use (see /debug/problems).", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *registryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.objects
	ch <- c.problems
}

// Collect implements prometheus.Collector.
func (c *registryCollector) Collect(ch chan<- prometheus.Metric) {
	v := c.reg.View()
	svcs := v.Services()
	eps := 0
	for _, s := range svcs {
		eps += len(v.Endpoints(s.Hostname))
	}
	for kind, n := range map[string]int{
		"Service": len(svcs), "Endpoint": eps,
		"PeerAuthentication": len(v.PeerAuthentications()), "DestinationRule": len(v.DestinationRules()),
		"Sidecar":             len(v.Sidecars()),
		"AuthorizationPolicy": len(v.AuthorizationPolicies()),
		"VirtualService":      len(v.VirtualServices()),
		"Gateway":             len(v.Gateways()),
		"WorkloadGroup":       len(v.WorkloadGroups()),
	} {
		ch <- prometheus.MustNewConstMetric(c.objects, prometheus.GaugeValue, float64(n), kind)
	}
	ch <- prometheus.MustNewConstMetric(c.problems, prometheus.GaugeValue, float64(len(c.reg.Problems())))
}

// Registry returns the registry for /metrics; other parts (the CA) may
// register their collectors on it.
func (m *metrics) Registry() *prometheus.Registry { return m.reg }
