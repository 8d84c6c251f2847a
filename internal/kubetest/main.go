package kubetest

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// InCI reports whether CI=true, where missing binaries fail instead of skip.
func InCI() bool { return os.Getenv("CI") == "true" }

// skippable reports whether a Start error lets tests skip: missing
// binaries, outside CI.
func skippable(err error) bool { return errors.Is(err, ErrMissingBinaries) && !InCI() }

// Main is for TestMain: it starts one Env for the package, stores it in
// *env, runs the tests and stops the Env. Use it as
//
//	var env *kubetest.Env
//	func TestMain(m *testing.M) { os.Exit(kubetest.Main(m, &env)) }
//
// and begin each test with env.Need(t). When the binaries are missing, the
// tests skip outside CI and the package fails in CI.
func Main(m *testing.M, env **Env) int {
	flag.Parse()
	if l := flag.Lookup("test.list"); l != nil && l.Value.String() != "" {
		return m.Run() // only lists names (e.g. hack/fuzz.sh): no server needed
	}
	e, err := Start()
	if err != nil {
		if stopErr := e.Stop(); stopErr != nil {
			fmt.Fprintln(os.Stderr, "kubetest: stop:", stopErr)
		}
		if !skippable(err) {
			fmt.Fprintln(os.Stderr, "kubetest:", err)
			return 1
		}
		fmt.Fprintln(os.Stderr, "kubetest: skipping tests that need a kube-apiserver:", err)
		*env = nil
		return m.Run()
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "kubetest: kube-apiserver %s ready at %s in %s\n", KubeVersion, e.Config.Host, e.StartDuration.Round(1e6))
	}
	*env = e
	code := m.Run()
	if err := e.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "kubetest: stop:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// Need returns e, or skips the test when Main could not find the binaries.
func (e *Env) Need(t testing.TB) *Env {
	t.Helper()
	if e == nil {
		t.Skip(ErrMissingBinaries)
	}
	return e
}

// New starts an Env for one test and stops it when the test ends. It skips
// the test when the binaries are missing, or fails it in CI.
func New(t testing.TB) *Env {
	t.Helper()
	e, err := Start()
	t.Cleanup(func() {
		if err := e.Stop(); err != nil {
			t.Errorf("kubetest: stop: %v", err)
		}
	})
	if skippable(err) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	return e
}

// CRDDir returns deploy/crds of the controlplane module, found by walking up
// from the working directory (a test runs in its package folder).
func CRDDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for {
		mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(mod), "module github.com/librarymesh/controlplane\n") {
			return filepath.Join(dir, "deploy", "crds"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("kubetest: module root of github.com/librarymesh/controlplane not found above the working directory")
		}
		dir = parent
	}
}
