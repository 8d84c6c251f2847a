package autoregister

import "github.com/prometheus/client_golang/prometheus"

// Metrics counts what the controller does. A nil *Metrics counts nothing.
type Metrics struct {
	registrations prometheus.Counter
	removals      prometheus.Counter
	refusals      *prometheus.CounterVec
	workloads     prometheus.Gauge
}

// NewMetrics makes the metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		registrations: prometheus.NewCounter(prometheus.CounterOpts{Name: "controlplane_autoregister_registrations_total",
			Help: "WorkloadEntries created for connecting workloads of a WorkloadGroup."}),
		removals: prometheus.NewCounter(prometheus.CounterOpts{Name: "controlplane_autoregister_removals_total",
			Help: "Auto-registered WorkloadEntries deleted a grace period after their last connection closed."}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "controlplane_autoregister_refusals_total",
			Help: "Connections of WorkloadGroup workloads refused, by reason (a gRPC code, or Limit past --auto-register-max-workloads)."},
			[]string{"reason"}),
		workloads: prometheus.NewGauge(prometheus.GaugeOpts{Name: "controlplane_autoregister_workloads",
			Help: "Auto-registered workloads this replica tracks (connected, or within their grace period)."}),
	}
	for _, c := range []prometheus.Collector{m.registrations, m.removals, m.refusals, m.workloads} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) registered() {
	if m != nil {
		m.registrations.Inc()
	}
}

func (m *Metrics) unregistered() {
	if m != nil {
		m.removals.Inc()
	}
}

func (m *Metrics) refused(reason string) {
	if m != nil {
		m.refusals.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) setWorkloads(n int) {
	if m != nil {
		m.workloads.Set(float64(n))
	}
}
