// Package kube holds the Kubernetes-facing parts of the certificate authority, built on
// client-go: CA material in Secrets (istio-ca-secret, cacerts), TokenReview for service
// account tokens, used single-use bootstrap tokens in a ConfigMap, and the root
// ConfigMap istio-ca-root-cert published in each watched namespace.
package kube
