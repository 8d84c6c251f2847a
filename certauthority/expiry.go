package certauthority

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ExpiryWarning is how long before a root or the signing certificate
// expires the CA starts logging a warning (once a day).
const ExpiryWarning = 30 * 24 * time.Hour

// expiryMetrics are the validity ends of the trust bundle and the signer.
type expiryMetrics struct {
	roots  *prometheus.GaugeVec
	signer *prometheus.GaugeVec
}

func newExpiryMetrics() expiryMetrics {
	return expiryMetrics{
		roots: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "controlplane_ca_root_expiry_timestamp_seconds",
			Help: "When each root of the trust bundle expires (Unix time), by root ID (sha256 of the certificate).",
		}, []string{"root"}),
		signer: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "controlplane_ca_signer_expiry_timestamp_seconds",
			Help: "When the signing certificate (the self-signed root, or the cacerts intermediate) expires (Unix time).",
		}, []string{"kind"}),
	}
}

func (e expiryMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{e.roots, e.signer}
}

// setExpiry exports t's roots and signer.
func (m *metrics) setExpiry(t *trust, _ time.Time) {
	m.expiry.roots.Reset()
	for _, r := range t.bundle {
		m.expiry.roots.WithLabelValues(rootID(r)).Set(float64(r.NotAfter.Unix()))
	}
	m.expiry.signer.Reset()
	kind := "root"
	if t.signer.plugged || len(t.signer.chain) > 1 {
		kind = "intermediate"
	}
	m.expiry.signer.WithLabelValues(kind).Set(float64(t.signer.cert.NotAfter.Unix()))
}

// warnExpiry logs a warning for each root and the signer expiring within
// ExpiryWarning.
func (ca *CA) warnExpiry(t *trust) {
	now := ca.cfg.Now()
	for _, r := range t.bundle {
		if left := r.NotAfter.Sub(now); left < ExpiryWarning {
			ca.log.Warn("a root of the trust bundle expires soon: rotate it with `controlplane ca rotate`",
				"root", rootID(r), "subject", r.Subject.String(), "expiry", r.NotAfter.UTC(), "left", left.Round(time.Minute))
		}
	}
	if c := t.signer.cert; c.NotAfter.Sub(now) < ExpiryWarning && !c.Equal(t.signer.root) {
		ca.log.Warn("the signing intermediate expires soon: replace cacerts (reloaded without a restart)",
			"subject", c.Subject.String(), "expiry", c.NotAfter.UTC(), "left", c.NotAfter.Sub(now).Round(time.Minute))
	}
}
