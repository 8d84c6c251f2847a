package e2e

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// Start starts `controlplane serve` like Serve but returns at once, without
// waiting for its listeners: for starting several servers at the same
// moment, or a server that is expected never to become ready. Call
// WaitReady to wait as Serve does. It is stopped when the test ends.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	s, _ := start(t, args)
	return s
}

// start starts `controlplane serve` with loopback port-0 addresses, a fresh
// data dir and args; found is closed once all its listeners are logged.
func start(t testing.TB, args []string) (s *Server, found chan struct{}) {
	t.Helper()
	s = &Server{DataDir: t.TempDir(), done: make(chan struct{})}
	all := []string{"serve", "--grpc-addr", "127.0.0.1:0", "--secure-grpc-addr", "127.0.0.1:0",
		"--http-addr", "127.0.0.1:0", "--inject-addr", "127.0.0.1:0", "--data-dir", s.DataDir, "--log-level", "debug"}
	s.cmd = exec.Command(Binary(t), append(all, args...)...)
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start controlplane: %v", err)
	}
	found = make(chan struct{})
	go s.read(stderr, found)
	t.Cleanup(func() { s.Stop(t) })
	return s, found
}

// WaitReady waits until a server from Start listens and answers /readyz.
func (s *Server) WaitReady(t testing.TB, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s.mu.Lock()
		up := s.GRPCAddr != "" && s.HTTPAddr != "" && s.SecureGRPCAddr != ""
		s.mu.Unlock()
		if up {
			break
		}
		select {
		case <-s.done:
			t.Fatalf("controlplane exited before listening:\n%s", s.Logs())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("controlplane did not listen within %s:\n%s", timeout, s.Logs())
		}
	}
	s.waitReady(t)
}

// Kill ends the server with SIGKILL (no cleanup, e.g. no lease release) and
// waits for it to exit.
func (s *Server) Kill() {
	if s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
}

// Exited reports whether the process has ended.
func (s *Server) Exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Interrupt ends a started cmd with SIGINT, or with SIGKILL when it has not
// exited within grace, and waits until done (closed by whoever waits for
// cmd) is closed.
func Interrupt(cmd *exec.Cmd, done <-chan struct{}, grace time.Duration) {
	_ = cmd.Process.Signal(os.Interrupt)
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Terminate sends the server SIGTERM, as Kubernetes does to a pod it
// stops, and returns how long it took to exit (SIGKILL after limit).
func (s *Server) Terminate(limit time.Duration) time.Duration {
	start := time.Now()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(limit):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	return time.Since(start)
}
