package kube

import (
	"context"
	"fmt"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"

	"github.com/librarymesh/controlplane/registry"
)

// istioResources are the Istio resources the source reads, by group version.
var istioResources = []struct {
	groupVersion, resource, kind string
}{
	{"networking.istio.io/v1", "serviceentries", registry.KindServiceEntry},
	{"networking.istio.io/v1", "workloadentries", registry.KindWorkloadEntry},
	{"networking.istio.io/v1", "destinationrules", registry.KindDestinationRule},
	{"networking.istio.io/v1", "sidecars", registry.KindSidecar},
	{"networking.istio.io/v1", "virtualservices", registry.KindVirtualService},
	{"networking.istio.io/v1", "gateways", registry.KindGateway},
	{"networking.istio.io/v1", "workloadgroups", registry.KindWorkloadGroup},
	{"security.istio.io/v1", "peerauthentications", registry.KindPeerAuthentication},
	{"security.istio.io/v1", "authorizationpolicies", registry.KindAuthorizationPolicy},
}

// servedIstioKinds asks the API server which of the Istio resources it
// serves: a cluster without the Istio CRDs (or an old version of them) still
// gets its Services and EndpointSlices watched. A missing group version is
// not an error; failing to ask is.
func servedIstioKinds(d discovery.DiscoveryInterface) (map[string]bool, error) {
	served := map[string]bool{}
	lists := map[string][]string{}
	for _, r := range istioResources {
		names, ok := lists[r.groupVersion]
		if !ok {
			list, err := d.ServerResourcesForGroupVersion(r.groupVersion)
			if err != nil && !apierrors.IsNotFound(err) {
				return nil, fmt.Errorf("discover %s: %w", r.groupVersion, err)
			}
			if list != nil {
				for _, res := range list.APIResources {
					names = append(names, res.Name)
				}
			}
			lists[r.groupVersion] = names
		}
		served[r.kind] = slices.Contains(names, r.resource)
	}
	return served, nil
}

// discoverIstio retries servedIstioKinds until it succeeds or ctx ends, and
// logs the kinds it cannot watch.
func (s *Source) discoverIstio(ctx context.Context) (map[string]bool, error) {
	var served map[string]bool
	backoff := wait.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Steps: 1 << 30, Cap: 10 * time.Second}
	err := wait.ExponentialBackoffWithContext(ctx, backoff, func(context.Context) (bool, error) {
		var err error
		served, err = servedIstioKinds(s.kube.Discovery())
		if err != nil {
			s.logger.Warn("kube source: API discovery failed, retrying", "error", err)
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("kube source: API discovery: %w", err)
	}
	for _, r := range istioResources {
		if !served[r.kind] {
			s.logger.Warn("kube source: the API server does not serve this Istio resource; not watching it (restart after installing the CRD)",
				"resource", r.resource+"."+r.groupVersion, "fix", "kubectl apply -k deploy/crds")
		}
	}
	return served, nil
}
