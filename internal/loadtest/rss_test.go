package loadtest

import (
	"os"
	"os/exec"
	"testing"
)

// TestRSSParts reads a running process's RSS and its anonymous part: the
// test binary's own, which has a heap (anonymous) and mapped code (files).
func TestRSSParts(t *testing.T) {
	self, err := os.FindProcess(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: &exec.Cmd{Process: self}}
	ballast := make([]byte, 64<<20)
	for i := range ballast {
		ballast[i] = 1
	}
	rss, anon, err := p.rssParts()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("RSS %.1f MB, anonymous %.1f MB", rss/1e6, anon/1e6)
	if anon < 64<<20 || anon >= rss {
		t.Errorf("anonymous RSS %.0f B with 64 MB written and RSS %.0f B: want at least 64 MB, and less than RSS (the binary's pages are not anonymous)", anon, rss)
	}
	if ballast[len(ballast)-1] != 1 {
		t.Fatal("ballast lost")
	}
	if _, _, err := (&process{cmd: &exec.Cmd{Process: &os.Process{Pid: -1}}}).rssParts(); err == nil {
		t.Error("RSS of no process: no error")
	}
}
