package certauthority

import (
	"bytes"
	"context"
	"fmt"
	"time"
)

// source is what the current trust was made from: the stored material and
// rotation record as read, so a re-read can tell whether anything changed.
type source struct {
	material []byte
	record   []byte
	plugged  bool
}

func (m *Material) fingerprint() []byte {
	return bytes.Join([][]byte{m.CertPEM, m.KeyPEM, m.ChainPEM, m.RootPEM}, []byte{0})
}

func (s source) same(o source) bool {
	return s.plugged == o.plugged && bytes.Equal(s.material, o.material) && bytes.Equal(s.record, o.record)
}

// loadTrust reads the plugged-in material or else the self-signed root
// (creating it on first start) and the rotation record.
func loadTrust(ctx context.Context, cfg Config) (source, *trust, error) {
	pm, pa, err := loadPlugged(ctx, cfg)
	if err != nil {
		return source{}, nil, err
	}
	if pa != nil {
		return source{material: pm.fingerprint(), plugged: true}, newTrust(pa, nil, nil, ""), nil
	}
	rec, err := loadRecord(ctx, cfg.Store)
	if err != nil {
		return source{}, nil, err
	}
	m, err := loadOrCreateRoot(ctx, cfg)
	if err != nil {
		return source{}, nil, err
	}
	t, err := selfSignedTrust(m, rec)
	if err != nil {
		return source{}, nil, fmt.Errorf("CA in %s: %w", cfg.Store, err)
	}
	return source{material: m.fingerprint(), record: rec}, t, nil
}

func loadRecord(ctx context.Context, s KeyStore) ([]byte, error) {
	rs, ok := rotationStore(s)
	if !ok {
		return nil, nil
	}
	rec, err := rs.LoadRotation(ctx)
	if err != nil {
		return nil, fmt.Errorf("load the rotation record from %s: %w", s, err)
	}
	return rec, nil
}

// selfSignedTrust is the trust of stored material m under the rotation
// record rec (nil: none).
func selfSignedTrust(m *Material, rec []byte) (*trust, error) {
	cur, curErr := newAuthority(m, false)
	if rec == nil {
		if curErr != nil {
			return nil, curErr
		}
		return newTrust(cur, nil, nil, ""), nil
	}
	r, err := DecodeRotation(rec)
	if err != nil {
		return nil, err
	}
	if curErr != nil && r.Phase != PhaseDropOld {
		return nil, curErr
	}
	if curErr != nil {
		cur = nil // finishing: the material may be half written; the record has the new one
	}
	return rotationTrust(cur, r)
}

// resync re-reads the stores and applies what changed: a rotation step
// recorded by another replica or the `ca rotate` command, or changed
// cacerts. A change that does not validate is refused with an error and
// the current trust stays.
func (ca *CA) resync(ctx context.Context) error {
	if ca.trust().signer.plugged {
		return ca.reloadPlugged(ctx)
	}
	rec, err := loadRecord(ctx, ca.cfg.Store)
	if err != nil {
		return err
	}
	m, err := ca.cfg.Store.Load(ctx)
	if err != nil {
		return fmt.Errorf("reload CA from %s: %w", ca.cfg.Store, err)
	}
	src := source{material: m.fingerprint(), record: rec}
	if src.same(*ca.src.Load()) {
		return nil
	}
	t, err := selfSignedTrust(m, rec)
	if err != nil {
		ca.metrics.reloads.WithLabelValues("refused").Inc()
		ca.src.Store(&src) // report a broken change once, not on every re-read
		return fmt.Errorf("CA in %s changed but is refused (still signing with the loaded material): %w", ca.cfg.Store, err)
	}
	ca.src.Store(&src)
	ca.metrics.reloads.WithLabelValues("applied").Inc()
	ca.setTrust(t)
	return nil
}

// reloadPlugged applies changed cacerts: the new signing certificate must
// match its key, chain to a root of the current trust bundle and be valid
// now. A new root goes through `ca rotate`, not a reload.
func (ca *CA) reloadPlugged(ctx context.Context) error {
	m, err := ca.cfg.Plugged.Load(ctx)
	if err != nil {
		return fmt.Errorf("reload plugged CA from %s: %w", ca.cfg.Plugged, err)
	}
	src := source{material: m.fingerprint(), plugged: true}
	if src.same(*ca.src.Load()) {
		return nil
	}
	a, err := ca.checkPlugged(m)
	if err != nil {
		ca.metrics.reloads.WithLabelValues("refused").Inc()
		ca.src.Store(&src) // report a broken change once, not on every re-read
		return fmt.Errorf("plugged CA in %s changed but is refused (still signing with the loaded material): %w", ca.cfg.Plugged, err)
	}
	ca.src.Store(&src)
	ca.metrics.reloads.WithLabelValues("applied").Inc()
	ca.setTrust(newTrust(a, nil, nil, ""))
	ca.warnExpiry(ca.trust())
	ca.log.Info("reloaded the plugged CA", "store", ca.cfg.Plugged.String(), "signer", a.cert.Subject.String(), "expiry", a.cert.NotAfter)
	return nil
}

func (ca *CA) checkPlugged(m *Material) (*authority, error) {
	a, err := newAuthority(m, true)
	if err != nil {
		return nil, err
	}
	now := ca.cfg.Now()
	for _, c := range a.chain {
		if now.After(c.NotAfter) || now.Before(c.NotBefore) {
			return nil, fmt.Errorf("%q is not valid now (valid %s to %s)", c.Subject.String(),
				c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	if !containsCert(ca.trust().bundle, a.root) {
		return nil, fmt.Errorf("%s: root %q (%s) is not in the trust bundle; a new root is rolled out with `controlplane ca rotate`",
			RootCertFile, a.root.Subject.String(), rootID(a.root))
	}
	return a, nil
}
