package nodeagent

import (
	"fmt"
	"os"
	"path/filepath"
)

// Files the agent writes to OutputDir (and keeps in StateDir), Istio's names.
const (
	FileCertChain = "cert-chain.pem"
	FileKey       = "key.pem"
	FileRoot      = "root-cert.pem"
)

// writeFiles writes the certificate, key and trust bundle to StateDir and OutputDir.
func (a *Agent) writeFiles() {
	a.mu.Lock()
	cur, roots := a.cur, a.rootPEM
	a.mu.Unlock()
	for _, dir := range []string{a.cfg.StateDir, a.cfg.OutputDir} {
		if dir == "" || cur == nil {
			continue
		}
		if err := writeCertFiles(dir, cur, roots); err != nil {
			a.log.Error("cannot write certificate files", "dir", dir, "error", err)
		}
	}
}

func writeCertFiles(dir string, cur *issued, roots []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	// The key first: a reader that sees a new chain finds its key.
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{{FileKey, cur.keyPEM, 0o600}, {FileCertChain, cur.chainPEM, 0o644}, {FileRoot, roots, 0o644}} {
		if err := writeAtomic(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("chmod %s: %w", tmp.Name(), err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	return os.Rename(tmp.Name(), path)
}

// loadState picks up the certificate kept in StateDir by an earlier run, when
// it is still valid for our identity and chains to the trust bundle.
func (a *Agent) loadState() error {
	if a.cfg.StateDir == "" {
		return nil
	}
	chain, err := os.ReadFile(filepath.Join(a.cfg.StateDir, FileCertChain))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	key, err := os.ReadFile(filepath.Join(a.cfg.StateDir, FileKey))
	if err != nil {
		return err
	}
	got, err := newIssued(chain, key)
	if err != nil {
		return fmt.Errorf("kept certificate and key do not match: %w", err)
	}
	certs, err := parseCerts(chain)
	if err != nil {
		return err
	}
	if err := a.verify(got.leaf, certs[1:]); err != nil {
		return err
	}
	now := a.cfg.Now()
	a.cur, a.renewAt = got, now.Add(got.leaf.NotAfter.Sub(now)/2)
	a.log.Info("using the kept certificate", "dir", a.cfg.StateDir, "expires", got.leaf.NotAfter.UTC())
	return nil
}
