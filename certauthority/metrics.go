package certauthority

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	issued   *prometheus.CounterVec
	refusals *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "controlplane_ca_certificates_issued_total",
			Help: "Workload certificates issued, by how the caller proved its identity.",
		}, []string{"auth"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "controlplane_ca_refusals_total",
			Help: "Certificate requests refused, by reason.",
		}, []string{"reason"}),
	}
	for _, c := range []prometheus.Collector{m.issued, m.refusals} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register CA metrics: %w", err)
		}
	}
	return m, nil
}
