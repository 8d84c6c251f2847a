package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/xds"

	"github.com/librarymesh/controlplane/internal/e2e"
)

// statusMesh has a service grpc-go accepts and one whose locality weights
// add up to more than grpc-go accepts at one priority (2^32-1); each
// weight alone is valid, so the control plane sends it and grpc-go NACKs.
const statusMesh = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: good, namespace: default}
spec:
  hosts: [good.default.svc.cluster.local]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: grpc, protocol: GRPC}]
  endpoints: [{address: 127.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: bad, namespace: default}
spec:
  hosts: [bad.default.svc.cluster.local]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: grpc, protocol: GRPC}]
  endpoints:
  - {address: 127.0.0.2, weight: 4294967295, locality: region/zone-a}
  - {address: 127.0.0.3, weight: 4294967295, locality: region/zone-b}
`

const (
	goodGRPCNode = "sidecar~127.0.0.11~good-client.default~default.svc.cluster.local"
	badGRPCNode  = "sidecar~127.0.0.12~bad-client.default~default.svc.cluster.local"
)

// grpcXDSClient starts a proxyless grpc-go client of target, bootstrapped
// to the control plane at addr as node.
func grpcXDSClient(t *testing.T, addr, node, target string) {
	t.Helper()
	bootstrap := fmt.Sprintf(`{
		"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": %q, "metadata": {"GENERATOR": "grpc", "NAMESPACE": "default"}}
	}`, addr, node)
	rb, err := xds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatalf("xDS resolver: %v", err)
	}
	cc, err := grpc.NewClient("xds:///"+target, grpc.WithResolvers(rb), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial %s: %v", target, err)
	}
	t.Cleanup(func() { cc.Close() })
	cc.Connect()
}

func TestProxyStatusShowsSyncedAndNacked(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "mesh.yaml"), []byte(statusMesh), 0o644); err != nil {
		t.Fatal(err)
	}
	s := e2e.Serve(t, "--config-dir", dir)
	grpcXDSClient(t, s.GRPCAddr, goodGRPCNode, "good.default.svc.cluster.local:8080")
	grpcXDSClient(t, s.GRPCAddr, badGRPCNode, "bad.default.svc.cluster.local:8080")

	want := []string{
		`(?m)^` + goodGRPCNode + `\s+proxyless-grpc\s+SYNCED \(\S+\)\s+SYNCED \(\S+\)\s+SYNCED \(\S+\)\s+SYNCED \(\S+\)\s+NOT SENT$`,
		`(?m)^` + badGRPCNode + `\s+proxyless-grpc\s+SYNCED \(\S+\)\s+SYNCED \(\S+\)\s+NACKED \(\S+\)\s+SYNCED \(\S+\)\s+NOT SENT$`,
		`(?m)^` + badGRPCNode + ` EDS NACKED version \S+: .*sum of weights of localities at the same priority`,
		`(?m)^NAME\s+KIND\s+CDS\s+LDS\s+EDS\s+RDS\s+SDS$`,
	}
	var out string
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var err error
		out, err = e2e.Run(ctx, t, "proxy-status", "--addr", s.GRPCAddr)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if matchesAll(out, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy-status output after 30s:\n%s\nwant lines matching:\n%s", out, strings.Join(want, "\n"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("proxy-status:\n%s", out)
}

func matchesAll(s string, patterns []string) bool {
	for _, p := range patterns {
		if !regexp.MustCompile(p).MatchString(s) {
			return false
		}
	}
	return true
}
