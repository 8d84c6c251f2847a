package server

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/librarymesh/controlplane/registry"
)

// get fetches a path from the server's HTTP address.
func get(t *testing.T, s *Server, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + s.HTTPAddr().String() + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// metricValue finds a sample line in a /metrics page.
func metricValue(t *testing.T, page, sample string) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`)
	m := re.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("metric %s not found", sample)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatalf("metric %s: %v", sample, err)
	}
	return v
}

func TestHealthAndReady(t *testing.T) {
	s := startServer(t, newFakeRegistry(defaultWorld()))
	if code, _ := get(t, s, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d, want 200", code)
	}
	waitFor(t, "/readyz 200", func() bool { code, _ := get(t, s, "/readyz"); return code == http.StatusOK })
}

func TestMetricsCountPushesAndConvergence(t *testing.T) {
	reg := newFakeRegistry(defaultWorld())
	s := startServer(t, reg)
	st, rx := sotwStream(t, s)
	subscribeAll(t, st, rx, podNodeID)

	w := defaultWorld()
	w.backend = "127.0.0.1:10"
	reg.set(w, registry.Change{Hostnames: []string{w.host}, EndpointsOnly: true})
	resp, err := rx.next(5 * time.Second)
	if err != nil {
		t.Fatalf("no EDS after an endpoint change: %v", err)
	}
	ack := &discoveryv3.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
	if err := st.Send(ack); err != nil {
		t.Fatal(err)
	}
	var page string
	waitFor(t, "convergence observed", func() bool {
		_, page = get(t, s, "/metrics")
		return strings.Contains(page, "controlplane_convergence_seconds_count 1")
	})
	checks := []struct {
		sample string
		min    float64
	}{
		{`controlplane_xds_connected_proxies{kind="PodSidecar"}`, 1},
		{`controlplane_xds_pushes_total{type="eds"}`, 2},
		{`controlplane_xds_resources_sent_total{type="cds"}`, 1},
		{`controlplane_snapshot_builds_total`, 2},
		{`controlplane_debounce_wait_seconds_count`, 1},
		{`controlplane_snapshot_build_seconds_count`, 2},
		{`go_goroutines`, 1},
		{`controlplane_config_errors`, 0},
	}
	for _, c := range checks {
		if v := metricValue(t, page, c.sample); v < c.min {
			t.Errorf("%s = %v, want >= %v", c.sample, v, c.min)
		}
	}
	if v := metricValue(t, page, `controlplane_xds_pushes_total{type="cds"}`); v != 1 {
		t.Errorf("CDS pushes = %v, want 1 (an endpoint change must not resend CDS)", v)
	}
}

func TestDebugViews(t *testing.T) {
	reg := newFakeRegistry(defaultWorld())
	reg.problems = []registry.Problem{{Source: "mesh/bad.yaml:3", Object: "ServiceEntry default/x", Field: "spec.ports[0].number", Reason: "InvalidPort", Message: "port 0"}}
	s := startServer(t, reg)
	st, rx := sotwStream(t, s)
	subscribeAll(t, st, rx, podNodeID)
	waitFor(t, "EDS ACK in syncz", func() bool {
		_, body := get(t, s, "/debug/syncz")
		var out []syncEntry
		if err := json.Unmarshal([]byte(body), &out); err != nil {
			t.Fatalf("syncz: %v: %s", err, body)
		}
		return len(out) == 1 && out[0].Types["eds"].Acked != "" && out[0].Types["eds"].Acked == out[0].Types["eds"].Sent
	})
	tests := []struct {
		path, want string
		code       int
	}{
		{"/debug/config_dump?proxyID=" + podNodeID, `"name": "outbound|8080||svc.test"`, 200},
		{"/debug/config_dump?proxyID=nope", "not connected", 404},
		{"/debug/connections", podNodeID, 200},
		{"/debug/problems", `"Field": "spec.ports[0].number"`, 200},
		{"/debug/registryz", `"revision": 1`, 200},
		{"/debug/pprof/", "goroutine", 200},
	}
	for _, tt := range tests {
		code, body := get(t, s, tt.path)
		if code != tt.code || !strings.Contains(body, tt.want) {
			t.Errorf("GET %s = %d, want %d with %q; body:\n%s", tt.path, code, tt.code, tt.want, body)
		}
	}
}

func TestDebugRefusesRemoteClients(t *testing.T) {
	tests := []struct {
		remote string
		open   bool
		want   int
	}{
		{"127.0.0.1:5000", false, http.StatusOK},
		{"[::1]:5000", false, http.StatusOK},
		{"192.0.2.7:5000", false, http.StatusForbidden},
		{"192.0.2.7:5000", true, http.StatusOK},
	}
	for _, tt := range tests {
		s := &Server{cfg: Config{DebugOpen: tt.open}}
		h := s.debugGuard(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		r := httptest.NewRequest("GET", "/debug/syncz", nil)
		r.RemoteAddr = tt.remote
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != tt.want {
			t.Errorf("remote %s open=%v: %d, want %d", tt.remote, tt.open, rec.Code, tt.want)
		}
	}
}

func TestMetricsOnSharedRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	other := prometheus.NewCounter(prometheus.CounterOpts{Name: "ca_certificates_issued_total", Help: "test"})
	reg.MustRegister(other)
	other.Add(3)
	s, err := New(Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Registry: newFakeRegistry(defaultWorld()),
		NewBuilder: newFakeBuilder, Prometheus: reg})
	if err != nil {
		t.Fatalf("New on a registry that has the Go collector: %v", err)
	}
	rec := httptest.NewRecorder()
	s.httpHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	page := rec.Body.String()
	if v := metricValue(t, page, "ca_certificates_issued_total"); v != 3 {
		t.Errorf("shared registry metric = %v, want 3", v)
	}
	metricValue(t, page, "controlplane_snapshot_builds_total")
	s.ads.stop()
	s.grpcLis.Close()
	s.httpLis.Close()
}

func TestStatusPageRefusesRemoteClients(t *testing.T) {
	s, err := New(Config{GRPCAddr: "127.0.0.1:0", Registry: newFakeRegistry(defaultWorld()), NewBuilder: newFakeBuilder})
	if err != nil {
		t.Fatal(err)
	}
	defer s.grpcLis.Close()
	s.SetStatusPage(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("status page")) }))
	tests := []struct {
		remote, path string
		open         bool
		want         int
	}{
		{"127.0.0.1:5000", "/", false, http.StatusOK},
		{"[::1]:5000", "/proxies", false, http.StatusOK},
		{"192.0.2.7:5000", "/", false, http.StatusForbidden},
		{"192.0.2.7:5000", "/api/proxies", false, http.StatusForbidden},
		{"192.0.2.7:5000", "/debug/syncz", false, http.StatusForbidden},
		{"192.0.2.7:5000", "/healthz", false, http.StatusOK},
		{"192.0.2.7:5000", "/metrics", false, http.StatusOK},
		{"192.0.2.7:5000", "/", true, http.StatusOK},
	}
	for _, tt := range tests {
		s.cfg.DebugOpen = tt.open
		r := httptest.NewRequest("GET", tt.path, nil)
		r.RemoteAddr = tt.remote
		rec := httptest.NewRecorder()
		s.httpHandler().ServeHTTP(rec, r)
		if rec.Code != tt.want {
			t.Errorf("GET %s from %s open=%v: %d, want %d", tt.path, tt.remote, tt.open, rec.Code, tt.want)
		}
		if tt.path == "/" && tt.want == http.StatusOK && rec.Body.String() != "status page" {
			t.Errorf("GET / from %s served %q", tt.remote, rec.Body.String())
		}
	}
}

func TestRecentConvergenceQuantiles(t *testing.T) {
	r := newRecentSamples(time.Minute, 100)
	for i := 1; i <= 200; i++ {
		r.add(float64(i) / 1000)
	}
	got := r.summary(30 * time.Second)
	if got.All.Count != 100 || got.All.P50 != 0.150 || got.All.P99 != 0.199 {
		t.Errorf("last 100 of 1..200 ms: count %d p50 %v p99 %v, want 100, 0.150, 0.199", got.All.Count, got.All.P50, got.All.P99)
	}
	if len(got.Steps) != 2 || got.Steps[1].Count != 100 || got.Steps[0].Count != 0 {
		t.Errorf("steps %+v, want 2 with all samples in the last", got.Steps)
	}
}
