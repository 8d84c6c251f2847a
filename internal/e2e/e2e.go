// Package e2e runs the real controlplane binary for end-to-end tests: it
// builds it once per test binary, starts `serve` on loopback ports and reads
// the bound addresses from its log.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// BinaryEnv names an already built controlplane binary for Binary to use.
const BinaryEnv = "CONTROLPLANE_E2E_BIN"

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds cmd/controlplane once and returns its path. When BinaryEnv
// names a file (a test re-run in a network namespace passes its parent's
// build on), that binary is used instead.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(BinaryEnv); p != "" {
		return p
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "controlplane-e2e-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "controlplane")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/controlplane")
		cmd.Dir = ModuleRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// ModuleRoot is the repository root (where go.mod is).
func ModuleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Server is a running `controlplane serve`.
type Server struct {
	GRPCAddr, SecureGRPCAddr, HTTPAddr string
	DataDir                            string

	cmd  *exec.Cmd
	mu   sync.Mutex
	logs bytes.Buffer
	done chan struct{}
}

var addrLine = regexp.MustCompile(`msg="serving (gRPC|HTTP|gRPC over TLS)" addr=(\S+)`)

// Serve starts `controlplane serve` with loopback port-0 addresses, a fresh
// data dir (unless args name one) and the extra args, and waits until its
// listeners are up. It is stopped when the test ends.
func Serve(t testing.TB, args ...string) *Server {
	t.Helper()
	s, found := start(t, args)
	select {
	case <-found:
	case <-s.done:
		t.Fatalf("controlplane exited before listening:\n%s", s.Logs())
	case <-time.After(60 * time.Second):
		t.Fatalf("controlplane did not listen within 60s:\n%s", s.Logs())
	}
	s.waitReady(t)
	return s
}

// waitReady polls /readyz until the server has loaded its sources and pushed.
func (s *Server) waitReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + s.HTTPAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("controlplane not ready within 60s:\n%s", s.Logs())
}

func (s *Server) read(r io.Reader, found chan struct{}) {
	defer close(s.done)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	signalled := false
	for sc.Scan() {
		line := sc.Text()
		s.mu.Lock()
		s.logs.WriteString(line + "\n")
		if m := addrLine.FindStringSubmatch(line); m != nil {
			switch m[1] {
			case "gRPC":
				s.GRPCAddr = m[2]
			case "HTTP":
				s.HTTPAddr = m[2]
			case "gRPC over TLS":
				s.SecureGRPCAddr = m[2]
			}
		}
		ready := s.GRPCAddr != "" && s.HTTPAddr != "" && s.SecureGRPCAddr != ""
		s.mu.Unlock()
		if ready && !signalled {
			signalled = true
			close(found)
		}
	}
	_ = s.cmd.Wait()
}

// Logs returns everything the server logged so far.
func (s *Server) Logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.String()
}

// WaitLog waits until the log contains substr.
func (s *Server) WaitLog(t testing.TB, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(s.Logs(), substr) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("log did not show %q within %s:\n%s", substr, timeout, s.Logs())
}

// Stop ends the server with SIGINT and waits for it.
func (s *Server) Stop(t testing.TB) {
	if s.cmd.Process == nil {
		return
	}
	Interrupt(s.cmd, s.done, 10*time.Second)
	if t.Failed() {
		t.Logf("controlplane log:\n%s", s.Logs())
	}
}

// Run runs the binary with args (e.g. `token create ...`) and returns stdout.
func Run(ctx context.Context, t testing.TB, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(ctx, Binary(t), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("controlplane %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

// Tool returns the path of a test tool built by hack/install-tools.sh
// (grpcurl, pilot-agent). When it is missing the test fails under CI=true and
// is skipped otherwise.
func Tool(t testing.TB, name string) string {
	t.Helper()
	dirs := []string{os.Getenv("CONTROLPLANE_TOOLS_BIN")}
	if home, err := os.UserCacheDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "controlplane", "bin"))
	}
	for _, d := range dirs {
		if d == "" {
			continue
		}
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is missing: run hack/install-tools.sh (make tools)", name)
	}
	t.Skipf("%s is missing: run hack/install-tools.sh (make tools)", name)
	return ""
}
