package e2e

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/librarymesh/controlplane/internal/testutil"
)

// Poll is testutil.Poll, for the tests that already call it here.
func Poll(timeout, interval time.Duration, cond func() bool) bool {
	return testutil.Poll(timeout, interval, cond)
}

// Eventually is testutil.Eventually, for the tests that already call it here.
func Eventually(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, what, timeout, cond)
}

// HTTPGet returns the body of a GET of url, whatever its status.
func HTTPGet(t testing.TB, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Metric returns the value of the first sample line of httpAddr's /metrics
// that starts with name (with its labels), or 0 when there is none.
func Metric(t testing.TB, httpAddr, name string) float64 {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(HTTPGet(t, "http://"+httpAddr+"/metrics")))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return 0
}

// WriteFileAtomic replaces path's content in one rename, so a folder
// watcher never reads half a file.
func WriteFileAtomic(t testing.TB, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// FreeLoopbackAddr returns a loopback address with a port free right now,
// for a server that must come back on the same address.
func FreeLoopbackAddr(t testing.TB) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	return lis.Addr().String()
}
