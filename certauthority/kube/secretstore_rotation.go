package kube

import (
	"bytes"
	"context"
	"fmt"

	"github.com/librarymesh/controlplane/certauthority"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var _ certauthority.RotationStore = SecretStore{}

// LoadRotation reads key rotation.json of the Secret; nil when absent.
func (s SecretStore) LoadRotation(ctx context.Context) ([]byte, error) {
	sec, err := s.Client.CoreV1().Secrets(s.Namespace).Get(ctx, s.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", s, err)
	}
	return sec.Data[certauthority.RotationFile], nil
}

// SaveRotation replaces key rotation.json if it still holds prev; the
// update is guarded by the Secret's resourceVersion, so of two writers
// one gets certauthority.ErrConflict.
func (s SecretStore) SaveRotation(ctx context.Context, prev, next []byte) error {
	return s.update(ctx, prev, func(sec *corev1.Secret) {
		if next == nil {
			delete(sec.Data, certauthority.RotationFile)
			return
		}
		sec.Data[certauthority.RotationFile] = next
	})
}

// FinishRotation writes m as the CA material and removes the record in one
// update.
func (s SecretStore) FinishRotation(ctx context.Context, prev []byte, m *certauthority.Material) error {
	return s.update(ctx, prev, func(sec *corev1.Secret) {
		sec.Data[certauthority.CACertFile] = m.CertPEM
		sec.Data[certauthority.CAKeyFile] = m.KeyPEM
		sec.Data[certauthority.CertChainFile] = m.ChainPEM
		sec.Data[certauthority.RootCertFile] = m.RootPEM
		delete(sec.Data, certauthority.RotationFile)
	})
}

func (s SecretStore) update(ctx context.Context, prev []byte, mutate func(*corev1.Secret)) error {
	secrets := s.Client.CoreV1().Secrets(s.Namespace)
	sec, err := secrets.Get(ctx, s.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get %s: %w", s, err)
	}
	if !bytes.Equal(sec.Data[certauthority.RotationFile], prev) {
		return fmt.Errorf("%s: %w", s, certauthority.ErrConflict)
	}
	sec = sec.DeepCopy()
	if sec.Data == nil {
		sec.Data = map[string][]byte{}
	}
	mutate(sec)
	_, err = secrets.Update(ctx, sec, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) {
		return fmt.Errorf("%s: %w", s, certauthority.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("update %s: %w", s, err)
	}
	return nil
}
