package certauthority

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// DirStore keeps CA material as PEM files in a folder: DATA_DIR/ca for the self-signed
// root, or an Istio cacerts folder for plugged-in material.
type DirStore struct {
	Dir string
}

var _ KeyStore = DirStore{}

func (d DirStore) String() string { return "folder " + d.Dir }

// Load reads ca-cert.pem and ca-key.pem (required) and cert-chain.pem and root-cert.pem
// (optional). A folder without ca-key.pem holds no material.
func (d DirStore) Load(_ context.Context) (*Material, error) {
	var m Material
	files := []struct {
		name     string
		dst      *[]byte
		required bool
	}{
		{CAKeyFile, &m.KeyPEM, true}, {CACertFile, &m.CertPEM, true},
		{CertChainFile, &m.ChainPEM, false}, {RootCertFile, &m.RootPEM, false},
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(d.Dir, f.name))
		switch {
		case errors.Is(err, fs.ErrNotExist) && f.required:
			return nil, fmt.Errorf("read %s: %w", filepath.Join(d.Dir, f.name), ErrNotFound)
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			return nil, fmt.Errorf("read CA material: %w", err)
		}
		*f.dst = b
	}
	return &m, nil
}

// Create writes the files into a temporary folder and renames it into place, so two
// processes racing on one data dir cannot mix their roots: the loser gets ErrExists.
func (d DirStore) Create(_ context.Context, m *Material) error {
	parent := filepath.Dir(d.Dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", parent, err)
	}
	tmp, err := os.MkdirTemp(parent, ".ca-tmp-")
	if err != nil {
		return fmt.Errorf("create CA folder: %w", err)
	}
	defer os.RemoveAll(tmp) //nolint:errcheck // best effort; gone after a successful rename
	if err := writeMaterial(tmp, m); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("chmod CA folder: %w", err)
	}
	err = os.Rename(tmp, d.Dir)
	if errors.Is(err, syscall.EEXIST) || errors.Is(err, syscall.ENOTEMPTY) {
		return fmt.Errorf("create %s: %w", d.Dir, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", d.Dir, err)
	}
	return nil
}

func writeMaterial(dir string, m *Material) error {
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{CAKeyFile, m.KeyPEM, 0o600}, {CACertFile, m.CertPEM, 0o644},
		{CertChainFile, m.ChainPEM, 0o644}, {RootCertFile, m.RootPEM, 0o644},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return fmt.Errorf("write CA material: %w", err)
		}
	}
	return nil
}

// writeFileAtomic replaces path with data through a temporary file and a rename.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create folder for %s: %w", path, err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(f.Name()) //nolint:errcheck // gone after a successful rename
	if _, err := f.Write(data); err != nil {
		f.Close() //nolint:errcheck // the write error is the one to report
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(f.Name(), mode); err != nil {
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
