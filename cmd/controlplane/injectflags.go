package main

import (
	"crypto/tls"
	"log/slog"

	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"

	"github.com/librarymesh/controlplane/certauthority"
	"github.com/librarymesh/controlplane/inject"
	injectkube "github.com/librarymesh/controlplane/inject/kube"
)

// injectFlags are serve's sidecar injection webhook settings.
type injectFlags struct {
	addr          string
	webhookConfig string
	cfg           inject.Config
}

func addInjectFlags(f *pflag.FlagSet, o *injectFlags) {
	f.StringVar(&o.addr, "inject-addr", ":15017", "HTTPS address of the sidecar injection webhook, path "+inject.Path+" (empty disables)")
	f.StringVar(&o.webhookConfig, "inject-webhook-config", injectkube.DefaultWebhookConfig,
		"MutatingWebhookConfiguration whose caBundle is set to our root at start in Kubernetes (empty: leave it alone)")
	f.StringVar(&o.cfg.Hub, "inject-hub", inject.DefaultHub, "registry of the injected proxy image")
	f.StringVar(&o.cfg.Tag, "inject-tag", inject.DefaultTag, "tag of the injected proxy image (Istio's version)")
	f.StringVar(&o.cfg.Image, "inject-image", inject.DefaultImage, "name of the injected proxy image (istio-proxy and istio-init)")
	f.StringVar(&o.cfg.DiscoveryAddress, "inject-discovery-address", inject.DefaultDiscoveryAddress,
		"address of our TLS port as injected sidecars reach it (their discoveryAddress and CA_ADDR)")
	f.BoolVar(&o.cfg.NativeSidecars, "inject-native-sidecars", false,
		"inject istio-proxy as a Kubernetes native sidecar (init container with restartPolicy Always; Kubernetes 1.29+); a pod's sidecar.istio.io/nativeSidecar annotation overrides")
	f.StringVar(&o.cfg.ClusterID, "inject-cluster-id", inject.DefaultClusterID, "ISTIO_META_CLUSTER_ID of injected sidecars")
}

// injectParts are the webhook server and, in Kubernetes, the caBundle
// patcher; none when --inject-addr is empty.
func injectParts(logger *slog.Logger, client kubernetes.Interface, ca *certauthority.CA, o serveOptions) ([]part, error) {
	if o.inject.addr == "" {
		return nil, nil
	}
	cfg := o.inject.cfg
	cfg.TrustDomain = o.trustDomain
	getCert := func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return ca.ServingCertificate() }
	srv, err := inject.NewServer(o.inject.addr, cfg, getCert, logger)
	if err != nil {
		return nil, err
	}
	parts := []part{srv}
	if client != nil && o.inject.webhookConfig != "" {
		parts = append(parts, injectkube.CABundlePatcher{Client: client, Name: o.inject.webhookConfig, Root: ca.RootPEM, Logger: logger})
	}
	return parts, nil
}
