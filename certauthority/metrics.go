package certauthority

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	issued   *prometheus.CounterVec
	refusals *prometheus.CounterVec
	// throttled counts calls refused by a rate limit, by scope (identity or global).
	throttled *prometheus.CounterVec
	// reloads counts re-read CA material that changed, by result (applied or refused).
	reloads *prometheus.CounterVec
	expiry  expiryMetrics
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
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "controlplane_ca_requests_throttled_total",
			Help: "Certificate requests refused by a rate limit (ResourceExhausted), by the limit's scope: identity or global.",
		}, []string{"scope"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "controlplane_ca_reloads_total",
			Help: "Changed CA material (cacerts, or a rotation step) re-read while running, by result: applied or refused (the old material keeps signing).",
		}, []string{"result"}),
		expiry: newExpiryMetrics(),
	}
	for _, scope := range []string{scopeIdentity, scopeGlobal} {
		m.throttled.WithLabelValues(scope) // export both series from the start
	}
	for _, c := range append([]prometheus.Collector{m.issued, m.refusals, m.throttled, m.reloads}, m.expiry.collectors()...) {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register CA metrics: %w", err)
		}
	}
	return m, nil
}
