package certauthority

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

var _ RotationStore = DirStore{}

// LoadRotation reads DIR/rotation.json; nil when it does not exist.
func (d DirStore) LoadRotation(_ context.Context) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(d.Dir, RotationFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read rotation record: %w", err)
	}
	return b, nil
}

// SaveRotation replaces DIR/rotation.json under an exclusive lock of the
// folder (the server and `ca rotate` both write it).
func (d DirStore) SaveRotation(ctx context.Context, prev, next []byte) error {
	return d.withLock(func() error {
		if err := d.checkRecord(ctx, prev); err != nil {
			return err
		}
		path := filepath.Join(d.Dir, RotationFile)
		if next == nil {
			return removeIfExists(path)
		}
		return writeFileAtomic(path, next, 0o600)
	})
}

// FinishRotation writes m as the CA material, then removes the record. A
// crash in between leaves the record in PhaseDropOld, whose trust needs
// only the record, so the next start finishes again.
func (d DirStore) FinishRotation(ctx context.Context, prev []byte, m *Material) error {
	return d.withLock(func() error {
		if err := d.checkRecord(ctx, prev); err != nil {
			return err
		}
		files := []struct {
			name string
			data []byte
			mode os.FileMode
		}{
			{CAKeyFile, m.KeyPEM, 0o600}, {CACertFile, m.CertPEM, 0o644},
			{CertChainFile, m.ChainPEM, 0o644}, {RootCertFile, m.RootPEM, 0o644},
		}
		for _, f := range files {
			if err := writeFileAtomic(filepath.Join(d.Dir, f.name), f.data, f.mode); err != nil {
				return err
			}
		}
		return removeIfExists(filepath.Join(d.Dir, RotationFile))
	})
}

func (d DirStore) checkRecord(ctx context.Context, prev []byte) error {
	cur, err := d.LoadRotation(ctx)
	if err != nil {
		return err
	}
	if !bytes.Equal(cur, prev) {
		return fmt.Errorf("%s: %w", filepath.Join(d.Dir, RotationFile), ErrConflict)
	}
	return nil
}

// withLock runs fn holding an exclusive flock on DIR/.lock.
func (d DirStore) withLock(fn func() error) error {
	f, err := os.OpenFile(filepath.Join(d.Dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("lock %s: %w", d.Dir, err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", d.Dir, err)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN) //nolint:errcheck // closing releases it too
	return fn()
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}
