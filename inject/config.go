package inject

import (
	"fmt"
	"strings"
)

// Defaults of Config, Istio's where Istio has one.
const (
	DefaultHub              = "docker.io/istio"
	DefaultTag              = "1.32.0"
	DefaultImage            = "proxyv2"
	DefaultDiscoveryAddress = "istiod.istio-system.svc:15012"
	DefaultTrustDomain      = "cluster.local"
	DefaultClusterID        = "Kubernetes"
	DefaultRevision         = "default"
)

// Config is what the injected spec is made from.
type Config struct {
	// Hub, Tag and Image make the proxy image HUB/IMAGE:TAG, used for both
	// istio-proxy and istio-init, as Istio does.
	Hub, Tag, Image string
	// DiscoveryAddress is where pilot-agent finds xDS and the CA
	// (discoveryAddress and CA_ADDR): our TLS port 15012.
	DiscoveryAddress string
	// TrustDomain is TRUST_DOMAIN and the mesh ID; it also makes the
	// cluster domain of --domain.
	TrustDomain string
	// ClusterID is ISTIO_META_CLUSTER_ID.
	ClusterID string
	// Revision is the istio.io/rev the pods are injected for.
	Revision string
	// NativeSidecars runs istio-proxy as a Kubernetes native sidecar (an
	// init container that keeps running) unless a pod's
	// sidecar.istio.io/nativeSidecar annotation says "false"; the
	// annotation turns it on for one pod too.
	NativeSidecars bool
}

// withDefaults fills the unset fields.
func (c Config) withDefaults() Config {
	set := func(v *string, def string) {
		if *v == "" {
			*v = def
		}
	}
	set(&c.Hub, DefaultHub)
	set(&c.Tag, DefaultTag)
	set(&c.Image, DefaultImage)
	set(&c.DiscoveryAddress, DefaultDiscoveryAddress)
	set(&c.TrustDomain, DefaultTrustDomain)
	set(&c.ClusterID, DefaultClusterID)
	set(&c.Revision, DefaultRevision)
	return c
}

// Validate reports the first field that cannot make a working spec.
func (c Config) Validate() error {
	c = c.withDefaults()
	if strings.ContainsAny(c.Hub+c.Image+c.Tag, " \t\n@") || strings.Contains(c.Tag, ":") || strings.Contains(c.Image, ":") {
		return fmt.Errorf("proxy image %q: hub, image and tag must not contain spaces, '@' or ':' (other than a registry port in the hub)", c.ProxyImage())
	}
	if _, port, ok := strings.Cut(c.DiscoveryAddress, ":"); !ok || port == "" {
		return fmt.Errorf("discovery address %q: want HOST:PORT", c.DiscoveryAddress)
	}
	return nil
}

// ProxyImage is the image of istio-proxy and istio-init.
func (c Config) ProxyImage() string {
	c = c.withDefaults()
	return strings.TrimSuffix(c.Hub, "/") + "/" + c.Image + ":" + c.Tag
}

// isProxyImage reports whether image is Istio's proxy image from any hub
// and tag (as a sidecar injected earlier, by us or by istiod, has).
func (c Config) isProxyImage(image string) bool {
	c = c.withDefaults()
	name := image
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	name, _, _ = strings.Cut(name, "@")
	name, _, _ = strings.Cut(name, ":")
	return name == c.Image
}
