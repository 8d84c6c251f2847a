package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	securityv1alpha1 "istio.io/api/security/v1alpha1"

	"github.com/librarymesh/controlplane/certauthority"
	"github.com/librarymesh/controlplane/internal/e2e"
	"github.com/librarymesh/controlplane/server/status"
)

// inventoryYAML is a Kubernetes Service with one endpoint at ip.
func inventoryYAML(ip string) string {
	return `apiVersion: v1
kind: Service
metadata: {name: inventory, namespace: default}
spec:
  clusterIP: 10.96.0.20
  ports: [{name: http, port: 8080, targetPort: 8080, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: inventory-abcde
  namespace: default
  labels: {kubernetes.io/service-name: inventory}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- addresses: ["` + ip + `"]
  conditions: {ready: true}
`
}

// scrape returns every sample of /metrics by its full name with labels.
func scrape(t *testing.T, httpAddr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
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

// ackingSidecar is an Envoy-like SotW stream asking for every type and
// ACKing every response until the test ends.
func ackingSidecar(t *testing.T, addr, node string) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, typeURL := range []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType} {
		if err := st.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: node}, TypeUrl: typeURL}); err != nil {
			t.Fatal(err)
		}
	}
	go func() {
		for {
			resp, err := st.Recv()
			if err != nil {
				return
			}
			_ = st.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()})
		}
	}()
}

// requestCertificate asks the CA on the TLS port of s for a workload
// certificate, with token as the bearer token when not empty.
func requestCertificate(ctx context.Context, t *testing.T, s *e2e.Server, token string) error {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	rootPEM, err := os.ReadFile(filepath.Join(s.DataDir, "root-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(s.SecureGRPCAddr, grpc.WithTransportCredentials(tlsCreds(t, rootPEM, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	_, err = securityv1alpha1.NewIstioCertificateServiceClient(conn).CreateCertificate(ctx,
		&securityv1alpha1.IstioCertificateRequest{Csr: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))})
	return err
}

// TestMetricsWithProxiesAndChanges runs the binary, connects three ACKing
// sidecars and a grpc-go client that NACKs, asks the CA for certificates
// and changes an endpoint, and checks /metrics shows all of it.
func TestMetricsWithProxiesAndChanges(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{"mesh.yaml": statusMesh, "inventory.yaml": inventoryYAML("10.8.0.5"),
		"broken.yaml": "apiVersion: v1\nkind: Service\nmetadata: {name: broken}\nspec: {ports: [{port: notanumber}]}\n"}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := e2e.Serve(t, "--config-dir", dir)
	sidecars := []string{
		"sidecar~127.0.0.21~a.default~default.svc.cluster.local",
		"sidecar~127.0.0.22~b.default~default.svc.cluster.local",
		"sidecar~127.0.0.23~c.default~default.svc.cluster.local",
	}
	for _, id := range sidecars {
		ackingSidecar(t, s.GRPCAddr, id)
	}
	grpcXDSClient(t, s.GRPCAddr, badGRPCNode, "bad.default.svc.cluster.local:8080")
	m := waitMetrics(t, s.HTTPAddr, "3 sidecars, 1 gRPC client and a NACK", func(m map[string]float64) bool {
		return m[`controlplane_xds_connected_proxies{kind="pod-sidecar"}`] == 3 &&
			m[`controlplane_xds_connected_proxies{kind="proxyless-grpc"}`] == 1 &&
			m[`controlplane_xds_nacks_total{type="eds"}`] >= 1
	})
	waitProxiesSynced(t, s.GRPCAddr, sidecars) // every first ACK landed
	before := scrape(t, s.HTTPAddr)["controlplane_convergence_seconds_count"]

	if err := os.WriteFile(filepath.Join(dir, "inventory.yaml"), []byte(inventoryYAML("10.8.0.6")), 0o644); err != nil {
		t.Fatal(err)
	}
	waitMetrics(t, s.HTTPAddr, "convergence observed for the 3 sidecars", func(m map[string]float64) bool {
		return m["controlplane_convergence_seconds_count"]-before >= 3
	})
	waitProxiesSynced(t, s.GRPCAddr, sidecars) // nothing is left to ACK
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var tok strings.Builder
	if err := certauthority.RunTokenCreate(ctx, certauthority.TokenCreateOptions{DataDir: s.DataDir, Namespace: "default",
		ServiceAccount: "inventory", TTL: time.Hour}, &tok); err != nil {
		t.Fatal(err)
	}
	if err := requestCertificate(ctx, t, s, strings.TrimSpace(tok.String())); err != nil {
		t.Fatalf("CreateCertificate with a bootstrap token: %v", err)
	}
	if err := requestCertificate(ctx, t, s, ""); err == nil {
		t.Fatal("CreateCertificate without credentials succeeded")
	}
	m = scrape(t, s.HTTPAddr)
	if got := m["controlplane_convergence_seconds_count"] - before; got != 3 {
		t.Errorf("convergence histogram count grew by %v after an endpoint change, want 3 (the affected sidecars)", got)
	}
	checkMetrics(t, m)
}

// waitProxiesSynced waits until CSDS shows each sidecar SYNCED for every type it
// was sent: it ACKed every version the server holds for it.
func waitProxiesSynced(t *testing.T, addr string, sidecars []string) {
	t.Helper()
	cc := e2e.Dial(t, addr, insecure.NewCredentials())
	e2e.Eventually(t, "every sidecar SYNCED", 30*time.Second, func() bool {
		proxies, err := status.Fetch(t.Context(), cc)
		if err != nil {
			return false
		}
		synced := 0
		for _, p := range proxies {
			if !slices.Contains(sidecars, p.ID) {
				continue
			}
			for _, ts := range p.Types {
				if ts.State != status.Synced && ts.State != status.NotSent {
					return false
				}
			}
			synced++
		}
		return synced == len(sidecars)
	})
}

// waitMetrics polls /metrics until cond holds.
func waitMetrics(t *testing.T, httpAddr, what string, cond func(map[string]float64) bool) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		m := scrape(t, httpAddr)
		if cond(m) {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: /metrics has\n%s", what, dumpMetrics(m, "controlplane_"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func dumpMetrics(m map[string]float64, prefix string) string {
	var b strings.Builder
	for k, v := range m {
		if strings.HasPrefix(k, prefix) && !strings.Contains(k, "_bucket") {
			b.WriteString(k + " " + strconv.FormatFloat(v, 'g', -1, 64) + "\n")
		}
	}
	return b.String()
}

// checkMetrics checks that each metric the issue names is there with a
// sane value.
func checkMetrics(t *testing.T, m map[string]float64) {
	t.Helper()
	sum := func(prefix string) float64 {
		total := 0.0
		for k, v := range m {
			if strings.HasPrefix(k, prefix) {
				total += v
			}
		}
		return total
	}
	checks := []struct {
		name string
		got  float64
		ok   func(float64) bool
	}{
		{"sidecars connected", m[`controlplane_xds_connected_proxies{kind="pod-sidecar"}`], func(v float64) bool { return v == 3 }},
		{"CDS pushes", m[`controlplane_xds_pushes_total{type="cds"}`], func(v float64) bool { return v >= 4 }},
		{"EDS resources sent", m[`controlplane_xds_resources_sent_total{type="eds"}`], func(v float64) bool { return v >= 6 }},
		{"EDS NACKs", m[`controlplane_xds_nacks_total{type="eds"}`], func(v float64) bool { return v >= 1 }},
		{"convergence buckets", sum("controlplane_convergence_seconds_bucket"), func(v float64) bool { return v > 0 }},
		{"debounce waits", m["controlplane_debounce_wait_seconds_count"], func(v float64) bool { return v >= 1 }},
		{"snapshot builds timed", m["controlplane_snapshot_build_seconds_count"], func(v float64) bool { return v >= 4 }},
		{"Services in the registry", m[`controlplane_registry_objects{kind="Service"}`], func(v float64) bool { return v == 3 }},
		{"config errors (broken.yaml)", m["controlplane_config_errors"], func(v float64) bool { return v >= 1 }},
		{"certificates issued", sum("controlplane_ca_certificates_issued_total"), func(v float64) bool { return v == 1 }},
		{"CA refusals", sum("controlplane_ca_refusals_total"), func(v float64) bool { return v == 1 }},
		{"goroutines", m["go_goroutines"], func(v float64) bool { return v > 10 }},
		{"heap in use", m["go_memstats_heap_inuse_bytes"], func(v float64) bool { return v > 1<<20 }},
		{"resident memory", m["process_resident_memory_bytes"], func(v float64) bool { return v > 1<<20 }},
	}
	for _, c := range checks {
		if !c.ok(c.got) {
			t.Errorf("%s: got %v", c.name, c.got)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", dumpMetrics(m, "controlplane_"))
	}
}
