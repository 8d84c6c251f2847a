package register

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"sigs.k8s.io/yaml"
)

// FileWriter keeps one multi-document YAML file per VM, DIR/vm-NS-NAME.yaml,
// in the folder a file-mode server watches.
type FileWriter struct {
	Dir string
}

// Path is the file that holds the VM's objects.
func (w FileWriter) Path(namespace, name string) string {
	return filepath.Join(w.Dir, fmt.Sprintf("vm-%s-%s.yaml", namespace, name))
}

// Write replaces the VM's file atomically unless it already holds the same objects.
func (w FileWriter) Write(_ context.Context, namespace, name string, objs []Object) ([]Change, error) {
	data, err := MarshalYAML(objs)
	if err != nil {
		return nil, err
	}
	path := w.Path(namespace, name)
	old, err := os.ReadFile(path)
	action := Created
	switch {
	case err == nil && bytes.Equal(old, data):
		action = Unchanged
	case err == nil:
		action = Updated
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if action != Unchanged {
		if err := writeAtomic(path, data); err != nil {
			return nil, err
		}
	}
	return changesFor(objs, action, path), nil
}

// Remove deletes the VM's file.
func (w FileWriter) Remove(_ context.Context, namespace, name string) ([]Change, error) {
	path := w.Path(namespace, name)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	objs, err := UnmarshalYAML(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return nil, fmt.Errorf("remove %s: %w", path, err)
	}
	return changesFor(objs, Deleted, path), nil
}

func changesFor(objs []Object, a Action, path string) []Change {
	out := make([]Change, 0, len(objs))
	for _, o := range objs {
		out = append(out, Change{Kind: o.GetObjectKind().GroupVersionKind().Kind, Namespace: o.GetNamespace(), Name: o.GetName(), Action: a, Where: path})
	}
	return out
}

// writeAtomic writes a temporary file in the same folder and renames it, so a
// watcher never reads half a file.
func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("chmod %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename to %s: %w", path, err)
	}
	return nil
}

// MarshalYAML renders objects as one multi-document YAML, without status
// or server-set fields.
func MarshalYAML(objs []Object) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString("# Written by `controlplane register`; `controlplane deregister` removes it.\n")
	for i, o := range objs {
		js, err := json.Marshal(o)
		if err != nil {
			return nil, fmt.Errorf("marshal %s %s: %w", o.GetObjectKind().GroupVersionKind().Kind, o.GetName(), err)
		}
		var m map[string]any
		if err := json.Unmarshal(js, &m); err != nil {
			return nil, fmt.Errorf("marshal %s: %w", o.GetName(), err)
		}
		delete(m, "status")
		if md, ok := m["metadata"].(map[string]any); ok {
			delete(md, "creationTimestamp")
		}
		y, err := yaml.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("marshal %s: %w", o.GetName(), err)
		}
		if i > 0 {
			buf.WriteString("---\n")
		}
		buf.Write(y)
	}
	return buf.Bytes(), nil
}
