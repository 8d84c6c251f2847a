package kube

import (
	"context"
	"fmt"

	"github.com/librarymesh/controlplane/certauthority"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// caSecretType is the Secret type Istio gives istio-ca-secret.
const caSecretType corev1.SecretType = "istio.io/ca-root"

// SecretStore keeps CA material in a Secret with Istio's keys (ca-cert.pem, ca-key.pem,
// cert-chain.pem, root-cert.pem).
type SecretStore struct {
	Client    kubernetes.Interface
	Namespace string
	Name      string
}

var _ certauthority.KeyStore = SecretStore{}

// SelfSignedSecret is istio-ca-secret in the server's namespace.
func SelfSignedSecret(client kubernetes.Interface, namespace string) SecretStore {
	return SecretStore{Client: client, Namespace: namespace, Name: certauthority.SelfSignedSecretName}
}

// PluggedSecret is the cacerts Secret in the server's namespace.
func PluggedSecret(client kubernetes.Interface, namespace string) SecretStore {
	return SecretStore{Client: client, Namespace: namespace, Name: certauthority.PluggedSecretName}
}

func (s SecretStore) String() string { return "secret " + s.Namespace + "/" + s.Name }

// Load reads the Secret; a missing Secret wraps certauthority.ErrNotFound.
func (s SecretStore) Load(ctx context.Context) (*certauthority.Material, error) {
	sec, err := s.Client.CoreV1().Secrets(s.Namespace).Get(ctx, s.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("%s: %w", s, certauthority.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", s, err)
	}
	m := &certauthority.Material{
		CertPEM:  sec.Data[certauthority.CACertFile],
		KeyPEM:   sec.Data[certauthority.CAKeyFile],
		ChainPEM: sec.Data[certauthority.CertChainFile],
		RootPEM:  sec.Data[certauthority.RootCertFile],
	}
	if len(m.CertPEM) == 0 || len(m.KeyPEM) == 0 {
		return nil, fmt.Errorf("%s lacks %s or %s", s, certauthority.CACertFile, certauthority.CAKeyFile)
	}
	return m, nil
}

// Create creates the Secret; when another replica created it first it returns an error
// wrapping certauthority.ErrExists (the caller then loads the winner's root).
func (s SecretStore) Create(ctx context.Context, m *certauthority.Material) error {
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace},
		Type:       caSecretType,
		Data: map[string][]byte{
			certauthority.CACertFile:    m.CertPEM,
			certauthority.CAKeyFile:     m.KeyPEM,
			certauthority.CertChainFile: m.ChainPEM,
			certauthority.RootCertFile:  m.RootPEM,
		},
	}
	_, err := s.Client.CoreV1().Secrets(s.Namespace).Create(ctx, sec, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("%s: %w", s, certauthority.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", s, err)
	}
	return nil
}
