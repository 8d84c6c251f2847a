package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

	"github.com/librarymesh/controlplane/internal/e2e"
)

// A proxy asking for a type no one serves gets an empty response within a
// second, and so does a debug client asking for an unknown debug type (an
// error that names the served ones).
func TestUnknownTypesAreAnswered(t *testing.T) {
	srv := e2e.Serve(t, "--config-dir", filepath.Join(e2e.ModuleRoot(), "examples", "library"))
	const nds = "type.googleapis.com/istio.networking.nds.v1.NameTable"
	start := time.Now()
	_, resp := e2e.ADSFirst(t, srv.GRPCAddr, &corev3.Node{Id: grpcNode}, nds, time.Second)
	if resp.GetTypeUrl() != nds || len(resp.GetResources()) != 0 {
		t.Errorf("answer to %s: type %s with %d resources, want an empty response of that type", nds, resp.GetTypeUrl(), len(resp.GetResources()))
	}
	t.Logf("%s answered in %s", nds, time.Since(start).Round(time.Millisecond))

	stream := e2e.ADSStream(t, srv.GRPCAddr)
	if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: "istio.io/debug/nonesuch", Node: &corev3.Node{Id: "debug~0.0.0.0~istioctl~cluster.local"}}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := stream.Recv(); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "istio.io/debug/syncz") {
			t.Errorf("unknown debug type: %v, want an error naming the served types", err)
		}
	case <-time.After(time.Second):
		t.Error("no answer to an unknown debug type within a second")
	}
}

func lineWith(text, substr string) string {
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			return l
		}
	}
	return ""
}
