package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/status"

	"github.com/librarymesh/controlplane/internal/e2e"
)

const (
	podNode = "sidecar~10.8.0.5~inventory-abc.default~default.svc.cluster.local"
	vmNode  = "sidecar~10.128.0.14~postgres-1-vm.default~default.svc.cluster.local"
)

func grpcurl(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e2e.Tool(t, "grpcurl"), args...)
	if stdin != "" {
		// Hold stdin open a little: ADS is a stream, and closing it early
		// can end the stream before the reply.
		pr, pw := io.Pipe()
		cmd.Stdin = pr
		go func() {
			pw.Write([]byte(stdin))
			time.Sleep(2 * time.Second)
			pw.Close()
		}()
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("grpcurl %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

func TestGrpcurl(t *testing.T) {
	srv := e2e.Serve(t, "--config-dir", filepath.Join(e2e.ModuleRoot(), "examples", "library"))
	addr := srv.GRPCAddr

	t.Run("list shows xDS, CSDS, health and the CA", func(t *testing.T) {
		out := grpcurl(t, "", "-plaintext", addr, "list")
		for _, svc := range []string{
			"envoy.service.discovery.v3.AggregatedDiscoveryService",
			"envoy.service.status.v3.ClientStatusDiscoveryService",
			"envoy.service.cluster.v3.ClusterDiscoveryService",
			"grpc.health.v1.Health",
			"istio.v1.auth.IstioCertificateService",
		} {
			if !strings.Contains(out, svc) {
				t.Errorf("grpcurl list lacks %s:\n%s", svc, out)
			}
		}
	})

	t.Run("health is SERVING", func(t *testing.T) {
		out := grpcurl(t, "", "-plaintext", addr, "grpc.health.v1.Health/Check")
		if !strings.Contains(out, "SERVING") {
			t.Errorf("health: %s", out)
		}
	})

	t.Run("ADS returns the pod sidecar's clusters", func(t *testing.T) {
		req := `{"node":{"id":"` + podNode + `"},"typeUrl":"` + resourcev3.ClusterType + `"}`
		out := grpcurl(t, req, "-plaintext", "-d", "@", addr,
			"envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources")
		for _, name := range []string{
			"outbound|5432||postgres-1-vm.default.svc.cluster.local",
			"outbound|8080||inventory.default.svc.cluster.local",
			"PassthroughCluster",
		} {
			if !strings.Contains(out, `"name": "`+name+`"`) {
				t.Errorf("ADS reply lacks cluster %s:\n%.2000s", name, out)
			}
		}
	})

	t.Run("CSDS shows ACK and NACK per proxy", func(t *testing.T) {
		acker, resp := e2e.ADSFirst(t, addr, &corev3.Node{Id: podNode}, resourcev3.ClusterType, 20*time.Second)
		ack := &discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
		if err := acker.Send(ack); err != nil {
			t.Fatal(err)
		}
		nacker, resp := e2e.ADSFirst(t, addr, &corev3.Node{Id: vmNode}, resourcev3.ClusterType, 20*time.Second)
		nack := &discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResponseNonce: resp.GetNonce(),
			ErrorDetail: &status.Status{Code: 3, Message: "test rejects clusters"}}
		if err := nacker.Send(nack); err != nil {
			t.Fatal(err)
		}
		var out string
		e2e.Poll(10*time.Second, 100*time.Millisecond, func() bool {
			out = grpcurl(t, "", "-plaintext", "-d", "{}", addr,
				"envoy.service.status.v3.ClientStatusDiscoveryService/FetchClientStatus")
			return clientStatus(t, out, podNode) == "ACKED" && clientStatus(t, out, vmNode) == "NACKED"
		})
		if got := clientStatus(t, out, podNode); got != "ACKED" {
			t.Errorf("pod sidecar clusters: %s, want ACKED\n%s", got, out)
		}
		if got := clientStatus(t, out, vmNode); got != "NACKED" {
			t.Errorf("VM sidecar clusters: %s, want NACKED\n%s", got, out)
		}
		if !strings.Contains(out, "test rejects clusters") {
			t.Errorf("CSDS does not show the NACK's error:\n%s", out)
		}
	})
}

// clientStatus finds the cluster type's status for node in grpcurl's JSON.
func clientStatus(t *testing.T, out, node string) string {
	var resp struct {
		Config []struct {
			Node struct {
				ID string `json:"id"`
			} `json:"node"`
			GenericXdsConfigs []struct {
				TypeURL      string `json:"typeUrl"`
				ClientStatus string `json:"clientStatus"`
			} `json:"genericXdsConfigs"`
		} `json:"config"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("CSDS output is not JSON: %v\n%s", err, out)
	}
	for _, c := range resp.Config {
		if c.Node.ID != node {
			continue
		}
		for _, g := range c.GenericXdsConfigs {
			if g.TypeURL == resourcev3.ClusterType {
				return g.ClientStatus
			}
		}
	}
	return "absent"
}
