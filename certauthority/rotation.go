package certauthority

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Phase is a step of a root rotation, in order.
type Phase string

// The phases of a rotation. The record of the phase lives next to the CA
// material (DATA_DIR/ca/rotation.json, key rotation.json of istio-ca-secret),
// so a restarted server or the other replica resumes where it stopped.
const (
	// PhaseTrustNew: the bundle holds the old and the new root; the old one
	// still signs. Ends when every connected proxy ACKed the new bundle and
	// every workload with a live certificate was handed it.
	PhaseTrustNew Phase = "trust-new"
	// PhaseSignNew: the new root signs; the bundle still holds both. Ends when
	// no certificate under the old root can still be valid: after the longest
	// TTL, or once every workload holding one has renewed, or when forced.
	PhaseSignNew Phase = "sign-new"
	// PhaseDropOld: the bundle holds the new root only. Ends, and the new
	// material replaces the old in the store, when every connected proxy
	// ACKed the new bundle.
	PhaseDropOld Phase = "drop-old"
)

// RotationFile is the record's file name in the CA folder and its key in the Secret.
const RotationFile = "rotation.json"

// ErrConflict is returned by RotationStore writes when the stored record is
// no longer the one the writer read.
var ErrConflict = errors.New("the rotation record changed meanwhile")

// RotationStore is a KeyStore that also keeps the rotation record. DirStore
// and the Kubernetes SecretStore are ones.
type RotationStore interface {
	KeyStore
	// LoadRotation returns the record's bytes, nil when no rotation is under way.
	LoadRotation(ctx context.Context) ([]byte, error)
	// SaveRotation replaces the record prev (nil: none) with next, or returns
	// an error wrapping ErrConflict when the stored record is not prev.
	SaveRotation(ctx context.Context, prev, next []byte) error
	// FinishRotation makes m the CA material and removes the record, if the
	// stored record is still prev (else ErrConflict).
	FinishRotation(ctx context.Context, prev []byte, m *Material) error
}

// Rotation is the record of a root rotation under way.
type Rotation struct {
	Phase      Phase     `json:"phase"`
	Started    time.Time `json:"started"`
	PhaseSince time.Time `json:"phaseSince"`
	// OldValidUntil is set when the new root starts signing: the old root's
	// certificates issued until then expire by this time at the latest.
	OldValidUntil time.Time `json:"oldValidUntil,omitzero"`
	// Force skips the wait of PhaseSignNew (`ca rotate --force`).
	Force bool `json:"force,omitempty"`
	// Next is the new signing material (a new self-signed root).
	Next Material `json:"next"`
}

// DecodeRotation parses a record, checking its phase and material.
func DecodeRotation(b []byte) (*Rotation, error) {
	var r Rotation
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("%s: %w", RotationFile, err)
	}
	switch r.Phase {
	case PhaseTrustNew, PhaseSignNew, PhaseDropOld:
	default:
		return nil, fmt.Errorf("%s: field phase: %q is not %s, %s or %s", RotationFile, r.Phase, PhaseTrustNew, PhaseSignNew, PhaseDropOld)
	}
	if _, err := newAuthority(&r.Next, false); err != nil {
		return nil, fmt.Errorf("%s: field next: %w", RotationFile, err)
	}
	return &r, nil
}

// Encode returns the record as JSON.
func (r *Rotation) Encode() []byte {
	b, _ := json.MarshalIndent(r, "", "  ") // plain fields always marshal
	return append(b, '\n')
}

// next returns the record moved to phase p at now.
func (r *Rotation) next(p Phase, now time.Time) *Rotation {
	n := *r
	n.Phase, n.PhaseSince = p, now
	return &n
}

// rotationStore returns s as a RotationStore, looking through wrappers.
func rotationStore(s KeyStore) (RotationStore, bool) {
	for s != nil {
		if rs, ok := s.(RotationStore); ok {
			return rs, true
		}
		u, ok := s.(interface{ Unwrap() KeyStore })
		if !ok {
			return nil, false
		}
		s = u.Unwrap()
	}
	return nil, false
}

// rotationTrust is the trust of a rotation record over the current material.
// cur may be nil in PhaseDropOld (the store may hold half-written material
// after a crash while finishing).
func rotationTrust(cur *authority, r *Rotation) (*trust, error) {
	next, err := newAuthority(&r.Next, false)
	if err != nil {
		return nil, fmt.Errorf("%s: field next: %w", RotationFile, err)
	}
	if cur == nil && r.Phase != PhaseDropOld {
		return nil, fmt.Errorf("rotation in phase %s needs the current CA material", r.Phase)
	}
	switch r.Phase {
	case PhaseTrustNew:
		return newTrust(cur, []*authority{next}, []*x509.Certificate{next.root}, r.Phase), nil
	case PhaseSignNew:
		return newTrust(next, []*authority{cur}, []*x509.Certificate{cur.root}, r.Phase), nil
	default:
		return newTrust(next, nil, nil, r.Phase), nil
	}
}
