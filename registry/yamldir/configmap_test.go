package yamldir_test

import (
	"os"
	"path/filepath"
	"testing"
)

// mountConfigMap lays out a directory as the kubelet mounts a ConfigMap: a
// timestamped directory, a "..data" symlink to it, and a symlink per key.
// Updating swaps "..data" atomically.
func mountConfigMap(t *testing.T, dir, version, content string) {
	t.Helper()
	ts := filepath.Join(dir, "..v"+version)
	if err := os.Mkdir(ts, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ts, "mesh.yaml"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink("..v"+version, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "mesh.yaml")
	if _, err := os.Lstat(link); err != nil {
		if err := os.Symlink(filepath.Join("..data", "mesh.yaml"), link); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWatchConfigMapMount(t *testing.T) {
	dir := t.TempDir()
	mountConfigMap(t, dir, "1", entryYAML("10.128.0.14", 5432))
	s := startDir(t, dir)
	if got := endpointAddr(s); got != "10.128.0.14" {
		t.Fatalf("initial endpoint = %q", got)
	}
	mountConfigMap(t, dir, "2", entryYAML("10.128.0.15", 5432))
	eventually(t, s, "endpoint after the ..data swap", func() bool { return endpointAddr(s) == "10.128.0.15" })
}
