package certauthority

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/pprof"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// benchServerEnv, when set to a data folder, makes the test binary a CA
// server instead of running tests: BenchmarkCreateCertificate runs the server
// in a child process so the server's CPU can be read apart from the client's.
// This file uses only what the CA has long exported, so it can be copied into
// an older tree to benchmark that tree's server (CA_BENCH_BASELINE).
const benchServerEnv = "CA_BENCH_SERVER_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(benchServerEnv); dir != "" {
		if err := runBenchServer(dir); err != nil {
			fmt.Fprintln(os.Stderr, "bench server:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runBenchServer serves the CA of dir (file mode, limits that never refuse)
// over TLS on a loopback port, prints the address, and serves until stdin
// closes.
// CA_BENCH_SERVER_CPUPROFILE names a file for the server's CPU profile.
func runBenchServer(dir string) error {
	if path := os.Getenv("CA_BENCH_SERVER_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	cfg := FileModeConfig(dir, "")
	cfg.Logger = quietLogger()
	cfg.Limits = &Limits{IdentityRate: 1e9, IdentityBurst: 1e9, GlobalRate: 1e9, GlobalBurst: 1e9}
	ca, err := New(context.Background(), cfg)
	if err != nil {
		return err
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(ca.ServingTLSConfig())))
	ca.Register(srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go srv.Serve(lis) //nolint:errcheck // ends with Stop
	fmt.Println(lis.Addr().String())
	io.Copy(io.Discard, bufio.NewReader(os.Stdin)) //nolint:errcheck // EOF or error: stop either way
	srv.Stop()
	return nil
}
