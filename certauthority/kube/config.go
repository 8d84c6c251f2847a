package kube

import (
	"github.com/librarymesh/controlplane/certauthority"
	"k8s.io/client-go/kubernetes"
)

// ModeConfig is Kubernetes mode for the server's namespace: the root in Secret
// istio-ca-secret (or the cacerts Secret's intermediate), service account tokens checked
// with TokenReview (audience istio-ca), used single-use bootstrap tokens in ConfigMap
// istio-ca-used-bootstrap-tokens. The caller adds Logger, Registerer, SANs and TTLs.
func ModeConfig(client kubernetes.Interface, namespace string) certauthority.Config {
	return certauthority.Config{
		Store:         SelfSignedSecret(client, namespace),
		Plugged:       PluggedSecret(client, namespace),
		TokenReviewer: TokenReviewer{Client: client},
		UsedTokens:    &UsedTokens{Client: client, Namespace: namespace},
	}
}
