package nodeagent

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/librarymesh/controlplane/vmbundle"
)

// scrapeAgent reads every sample the agent serves at path, by its name with labels.
func scrapeAgent(t *testing.T, addr, path string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", path, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		i := strings.LastIndexByte(line, ' ')
		if strings.HasPrefix(line, "#") || i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// TestAgentServesMetrics scrapes a running agent's metrics over HTTP, as
// Prometheus does: certificates issued and the served one's expiry, and
// DNS answers by code after real queries; both paths serve the same
// registry, other paths and methods are refused.
func TestAgentServesMetrics(t *testing.T) {
	const ttl = 3 * time.Second
	ca := newTestCA(t, ttl)
	bundle := writeBundle(t, ca, time.Minute)
	cfg := agentConfig(t, bundle, ttl, quiet())
	cfg.MetricsAddress, cfg.DNSAddress = "127.0.0.1:0", "127.0.0.1:0"
	a := startAgent(t, cfg)

	deadline := time.Now().Add(15 * time.Second)
	for (a.Renewals() < 2 || a.MetricsAddress() == "" || a.DNSAddress() == "") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if a.Renewals() < 2 || a.MetricsAddress() == "" {
		t.Fatalf("after 15 s: %d certificates, metrics at %q", a.Renewals(), a.MetricsAddress())
	}
	res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", a.DNSAddress())
	}}
	for _, name := range []string{"inventory.default.svc.cluster.local", "pg.default.svc.cluster.local", "default.svc.cluster.local"} {
		_, _ = res.LookupNetIP(t.Context(), "ip4", name)
	}

	m := scrapeAgent(t, a.MetricsAddress(), "/stats/prometheus")
	if got := m[`controlplane_agent_certificate_requests_total{result="issued"}`]; got < 2 || got > float64(a.Renewals()) {
		t.Errorf("certificates issued = %v, agent counts %d", got, a.Renewals())
	}
	// The expiry is of a certificate served at or after the scrape's start.
	if got, min := m["controlplane_agent_certificate_expiry_timestamp_seconds"], float64(a.Current().NotAfter.Add(-ttl).Unix()); got < min {
		t.Errorf("certificate expiry = %v, want >= %v", got, min)
	}
	if got := m[`controlplane_agent_dns_answers_total{rcode="NOERROR"}`]; got != 2 {
		t.Errorf("NOERROR answers = %v, want 2 (one A query per mesh name)", got)
	}
	if got := m[`controlplane_agent_dns_answers_total{rcode="NXDOMAIN"}`]; got != 1 {
		t.Errorf("NXDOMAIN answers = %v, want 1", got)
	}
	if _, ok := m["process_resident_memory_bytes"]; !ok {
		t.Error("no process metrics")
	}
	if _, ok := m["controlplane_agent_xds_connected"]; !ok {
		t.Error("no controlplane_agent_xds_connected")
	}
	other := scrapeAgent(t, a.MetricsAddress(), "/metrics")
	if other[`controlplane_agent_dns_answers_total{rcode="NXDOMAIN"}`] != 1 {
		t.Error("/metrics does not serve the same registry")
	}
	for _, req := range []struct{ method, path string }{{"GET", "/debug/pprof/"}, {"POST", "/metrics"}} {
		r, err := http.NewRequestWithContext(t.Context(), req.method, "http://"+a.MetricsAddress()+req.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("%s %s = %s, want a refusal", req.method, req.path, resp.Status)
		}
	}
}

// The bundle names 0.0.0.0:15020; --metrics-address off and a malformed
// address are honoured and refused.
func TestAgentMetricsAddress(t *testing.T) {
	ca := newTestCA(t, time.Hour)
	bundle := writeBundle(t, ca, time.Minute)
	cfg, err := LoadConfig(bundle)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MetricsAddress != vmbundle.DefaultMetricsAddress {
		t.Errorf("bundle metrics address = %q, want %q", cfg.MetricsAddress, vmbundle.DefaultMetricsAddress)
	}
	for _, tc := range []struct{ addr, want string }{{Off, ""}, {"127.0.0.1:0", "127.0.0.1:0"}} {
		c := agentConfig(t, bundle, time.Hour, quiet())
		c.MetricsAddress, c.DNSAddress = tc.addr, Off
		a, err := New(c)
		if err != nil {
			t.Fatal(err)
		}
		if a.cfg.MetricsAddress != tc.want || a.cfg.DNSAddress != "" {
			t.Errorf("metrics %q: agent serves metrics at %q and DNS at %q, want %q and none", tc.addr, a.cfg.MetricsAddress, a.cfg.DNSAddress, tc.want)
		}
	}
	c := agentConfig(t, bundle, time.Hour, quiet())
	c.MetricsAddress = "15020"
	if _, err := New(c); err == nil || !strings.Contains(err.Error(), `metrics address "15020"`) || !strings.Contains(err.Error(), vmbundle.EnvMetricsAddr) {
		t.Errorf("New with metrics address 15020: %v, want an error naming it and %s", err, vmbundle.EnvMetricsAddr)
	}
}

// FuzzClusterEnv reads cluster.env as the agent does: it never panics, and
// a metrics address it accepts is off or HOST:PORT.
func FuzzClusterEnv(f *testing.F) {
	for _, seed := range []string{
		"CONTROLPLANE_METRICS_ADDR=0.0.0.0:15020\n",
		"CONTROLPLANE_METRICS_ADDR=off\nISTIO_META_DNS_CAPTURE=true\n",
		"CONTROLPLANE_METRICS_ADDR='[::1]:15020'\n",
		"CONTROLPLANE_METRICS_ADDR=:99999\n",
		"CONTROLPLANE_METRICS_ADDR=15020\nSECRET_TTL=1h\n",
		"ISTIO_META_DNS_CAPTURE=TRUE\nCONTROLPLANE_DNS_ADDR=\nCONTROLPLANE_DNS_DOMAINS=a,,b\n",
		"SECRET_TTL=forever\n",
		"=x\n# comment\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		env, _, err := vmbundle.ParseEnv(data)
		if err != nil {
			return
		}
		c, err := Config{BundleDir: "b"}.fromEnv(env)
		if err != nil {
			return
		}
		c = c.withDefaults()
		if c.MetricsAddress == Off || c.DNSAddress == Off {
			t.Fatalf("off survived: metrics %q, DNS %q", c.MetricsAddress, c.DNSAddress)
		}
		if err := c.checkMetricsAddress(); err != nil {
			if !strings.Contains(err.Error(), vmbundle.EnvMetricsAddr) {
				t.Fatalf("error does not name %s: %v", vmbundle.EnvMetricsAddr, err)
			}
			return
		}
		if c.MetricsAddress != "" {
			if _, _, err := net.SplitHostPort(c.MetricsAddress); err != nil {
				t.Fatalf("accepted metrics address %q: %v", c.MetricsAddress, err)
			}
		}
	})
}
