// Package certauthority is the control plane's SPIFFE certificate authority.
//
// It keeps a root (self-signed and persisted through a KeyStore, or plugged in from
// Istio's cacerts layout), signs workload certificates for proven identities only, and
// serves Istio's certificate API (istio.v1.auth.IstioCertificateService). Callers prove
// who they are with a client certificate from this CA, a Kubernetes service account
// token (TokenReview, audience istio-ca) or a bootstrap token this CA issued.
//
// The package knows nothing of xDS; the server registers the gRPC service it offers.
package certauthority
