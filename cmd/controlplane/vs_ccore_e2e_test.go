package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/librarymesh/controlplane/internal/e2e"
)

// ccoreScript makes RPCs through gRPC C-core's xDS resolver (Debian's
// python3-grpcio) and prints one word per RPC: the status the backend
// reported, or the gRPC code of the failure. argv: target, count, then
// header key and value (or "-").
const ccoreScript = `
import sys, grpc
target, count, key, value = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ch = grpc.insecure_channel("xds:///" + target)
check = ch.unary_unary("/grpc.health.v1.Health/Check")
md = [] if key == "-" else [(key, value)]
for i in range(count):
    try:
        resp = check(b"\x0a\x05which", metadata=md, timeout=5, wait_for_ready=True)
        print({b"\x08\x01": "SERVING", b"\x08\x02": "NOT_SERVING"}.get(resp, repr(resp)))
    except grpc.RpcError as e:
        print(e.code().name)
    sys.stdout.flush()
`

// ccorePython is a python3 that imports grpc (Debian's python3-grpcio),
// or "" when there is none.
func ccorePython() string {
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(p, "-c", "import grpc").Run() == nil {
			return p
		}
	}
	return ""
}

// ccoreRPCs runs count RPCs with C-core and returns what each printed.
func ccoreRPCs(t *testing.T, python, bootstrap string, count int, key, value string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-c", ccoreScript, echoTarget, fmt.Sprint(count), key, value)
	cmd.Env = append(cmd.Environ(), "GRPC_XDS_BOOTSTRAP_CONFIG="+bootstrap, "GRPC_VERBOSITY=ERROR")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("C-core client: %v\n%s", err, out)
	}
	return strings.Fields(string(out))
}

// TestVirtualServiceRoutesCCore is TestVirtualServiceRoutes' second
// opinion from gRPC C-core, which is stricter than grpc-go in places: it
// accepts the routes (a NACK would fail every RPC), splits 80/20, follows
// the header match, returns the fault's status and retries.
func TestVirtualServiceRoutesCCore(t *testing.T) {
	python := ccorePython()
	if python == "" {
		t.Skip("no python3 with grpc (apt-get install python3-grpcio): C-core's xDS client is not available")
	}
	v1 := e2e.HealthBackend(t, healthpb.HealthCheckResponse_SERVING)
	v2 := e2e.HealthBackend(t, healthpb.HealthCheckResponse_NOT_SERVING)
	dir := t.TempDir()
	flaky := &flakyHealth{}
	e2e.WriteFileAtomic(t, filepath.Join(dir, "echo.yaml"), vsMesh(v1, v2, flakyBackend(t, flaky)))
	srv := e2e.Serve(t, "--config-dir", dir, "--debounce", "20ms")
	bootstrap := fmt.Sprintf(`{"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": %q, "metadata": {"GENERATOR": "grpc", "NAMESPACE": "test"}}}`, srv.GRPCAddr, grpcNode)

	counts := map[string]int{}
	for _, w := range ccoreRPCs(t, python, bootstrap, 1000, "-", "-") {
		counts[w]++
	}
	t.Logf("C-core, 1000 RPCs: %v", counts)
	if v1n := counts["SERVING"]; v1n+counts["NOT_SERVING"] != 1000 || v1n < 750 || v1n > 850 {
		t.Errorf("C-core split = %v, want SERVING (v1) 800±50 of 1000 and NOT_SERVING (v2) the rest", counts)
	}
	if got := ccoreRPCs(t, python, bootstrap, 20, "x-canary", "yes"); strings.Join(got, " ") != strings.TrimSpace(strings.Repeat("NOT_SERVING ", 20)) {
		t.Errorf("C-core with x-canary: yes reached %v, want v2 (NOT_SERVING) every time", got)
	}
	if got := ccoreRPCs(t, python, bootstrap, 1, "x-fault", "abort"); len(got) != 1 || got[0] != "ABORTED" {
		t.Errorf("C-core with x-fault: abort got %v, want ABORTED", got)
	}
	if got := ccoreRPCs(t, python, bootstrap, 1, "x-retry", "1"); len(got) != 1 || got[0] != "SERVING" || flaky.attempts.Load() != 2 {
		t.Errorf("C-core with x-retry got %v after %d attempts, want SERVING after 2", got, flaky.attempts.Load())
	}
}
