package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/dns/dnsmessage"
	"google.golang.org/grpc/status"
)

// MetricsPaths are where the agent serves its Prometheus metrics: Istio's
// path (pilot-agent's on 15020) and the usual one.
var MetricsPaths = []string{"/stats/prometheus", "/metrics"}

// metrics are the agent's own Prometheus metrics, on a registry of its own.
type metrics struct {
	reg          *prometheus.Registry
	certs        *prometheus.CounterVec // result: issued, failed
	certExpiry   prometheus.Gauge
	dnsAnswers   *prometheus.CounterVec // rcode
	probes       *prometheus.CounterVec // result: success, failure
	healthy      prometheus.Gauge
	xdsConnected prometheus.Gauge
	xdsEnds      *prometheus.CounterVec // code
}

const metricsNS = "controlplane_agent"

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.certs = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNS, Name: "certificate_requests_total",
		Help: "Certificate requests to the CA, by result (issued, failed)."}, []string{"result"})
	m.certExpiry = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: metricsNS, Name: "certificate_expiry_timestamp_seconds",
		Help: "When the certificate being served expires (Unix time; 0 before the first)."})
	m.dnsAnswers = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNS, Name: "dns_answers_total",
		Help: "DNS answers for mesh names, by response code (NOERROR, NXDOMAIN, REFUSED, FORMERR, NOTIMP)."}, []string{"rcode"})
	m.probes = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNS, Name: "probes_total",
		Help: "Runs of the WorkloadGroup's readiness probe against the local workload, by result (success, failure)."}, []string{"result"})
	m.healthy = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: metricsNS, Name: "workload_healthy",
		Help: "1 while the health reported for the workload is healthy, 0 while it is not (group VMs only)."})
	m.xdsConnected = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: metricsNS, Name: "xds_connected",
		Help: "1 while the registration stream to the control plane is open (group VMs only)."})
	m.xdsEnds = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNS, Name: "xds_stream_ends_total",
		Help: "Registration streams that ended, by gRPC code (PermissionDenied, ResourceExhausted: refused by the control plane)."}, []string{"code"})
	m.reg.MustRegister(m.certs, m.certExpiry, m.dnsAnswers, m.probes, m.healthy, m.xdsConnected, m.xdsEnds,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// issued counts a certificate the CA issued, which expires at expiry.
func (m *metrics) issued(expiry time.Time) {
	m.certs.WithLabelValues("issued").Inc()
	m.certExpiry.Set(float64(expiry.Unix()))
}

// failed counts a renewal that got no certificate.
func (m *metrics) failed() { m.certs.WithLabelValues("failed").Inc() }

func (m *metrics) probed(ok bool) {
	if ok {
		m.probes.WithLabelValues("success").Inc()
	} else {
		m.probes.WithLabelValues("failure").Inc()
	}
}

func (m *metrics) health(healthy bool) { m.healthy.Set(boolValue(healthy)) }

func (m *metrics) connected(up bool) { m.xdsConnected.Set(boolValue(up)) }

func (m *metrics) streamEnded(err error) { m.xdsEnds.WithLabelValues(status.Code(err).String()).Inc() }

var rcodeNames = map[dnsmessage.RCode]string{
	dnsmessage.RCodeSuccess: "NOERROR", dnsmessage.RCodeNameError: "NXDOMAIN", dnsmessage.RCodeRefused: "REFUSED",
	dnsmessage.RCodeFormatError: "FORMERR", dnsmessage.RCodeNotImplemented: "NOTIMP",
}

func (m *metrics) dnsAnswer(rc dnsmessage.RCode) {
	name, ok := rcodeNames[rc]
	if !ok {
		name = fmt.Sprint(int(rc))
	}
	m.dnsAnswers.WithLabelValues(name).Inc()
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// metricsServer serves the registry over HTTP on one address.
type metricsServer struct {
	lis net.Listener
	srv *http.Server
}

func listenMetrics(ctx context.Context, addr string, m *metrics, log *slog.Logger) (*metricsServer, error) {
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	h := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)})
	for _, p := range MetricsPaths {
		mux.Handle("GET "+p, h)
	}
	return &metricsServer{lis: lis, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}, nil
}

// Addr is where the server listens.
func (s *metricsServer) Addr() string { return s.lis.Addr().String() }

// serve answers until ctx ends.
func (s *metricsServer) serve(ctx context.Context, log *slog.Logger) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.srv.Serve(s.lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("metrics server stopped", "error", err)
		}
	}()
	<-ctx.Done()
	shut, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	_ = s.srv.Shutdown(shut)
	<-done
}
