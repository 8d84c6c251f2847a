package certauthority

import (
	"context"
	"errors"
)

// File and Secret keys, as Istio names them.
const (
	CACertFile    = "ca-cert.pem"
	CAKeyFile     = "ca-key.pem"
	CertChainFile = "cert-chain.pem"
	RootCertFile  = "root-cert.pem"
)

// Istio's object names.
const (
	SelfSignedSecretName = "istio-ca-secret"
	PluggedSecretName    = "cacerts"
	RootConfigMapName    = "istio-ca-root-cert"
)

// ErrNotFound is returned by KeyStore.Load when the store holds no CA material.
var ErrNotFound = errors.New("no CA material")

// ErrExists is returned by KeyStore.Create when another writer created the material first.
var ErrExists = errors.New("CA material already exists")

// Material is CA material in Istio's PEM layout.
type Material struct {
	CertPEM  []byte // ca-cert.pem: the signing certificate
	KeyPEM   []byte // ca-key.pem: its private key
	ChainPEM []byte // cert-chain.pem: signing cert up to the root (may be empty)
	RootPEM  []byte // root-cert.pem: the trust anchor
}

// KeyStore loads and creates CA material.
type KeyStore interface {
	// Load returns the stored material or an error wrapping ErrNotFound.
	Load(ctx context.Context) (*Material, error)
	// Create stores material if none exists; it returns an error wrapping ErrExists when
	// another writer won the race (the caller then loads theirs).
	Create(ctx context.Context, m *Material) error
	// String names the store in logs and errors.
	String() string
}
