package deploy_test

import (
	"net"
	"slices"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/librarymesh/controlplane/certauthority"
)

// TestRenderedMeshConfig checks the ConfigMap istio that Istio's tools read
// (istioctl x workload entry configure copies its defaultConfig into a VM's
// mesh.yaml): its discoveryAddress is the istiod Service's TLS port under a
// name our serving certificate carries, and its trust domain is serve's.
func TestRenderedMeshConfig(t *testing.T) {
	objs := render(t, ".")
	var cm corev1.ConfigMap
	find(t, objs, "ConfigMap", "istio", &cm)
	var mesh struct {
		TrustDomain   string `json:"trustDomain"`
		DefaultConfig struct {
			DiscoveryAddress string `json:"discoveryAddress"`
		} `json:"defaultConfig"`
	}
	if err := yaml.UnmarshalStrict([]byte(cm.Data["mesh"]), &mesh); err != nil {
		t.Fatalf("ConfigMap istio, key mesh: %v\n%s", err, cm.Data["mesh"])
	}
	if mesh.TrustDomain != certauthority.DefaultTrustDomain {
		t.Errorf("ConfigMap istio: trustDomain %q, want serve's %q", mesh.TrustDomain, certauthority.DefaultTrustDomain)
	}
	host, port, err := net.SplitHostPort(mesh.DefaultConfig.DiscoveryAddress)
	if err != nil {
		t.Fatalf("ConfigMap istio: defaultConfig.discoveryAddress: %v", err)
	}
	if want := "istiod." + cm.Namespace + ".svc"; host != want {
		t.Errorf("ConfigMap istio: discoveryAddress host %s, want the istiod Service's %s", host, want)
	}
	sans := certauthority.DefaultServingSANs
	if !slices.Contains(sans, host) {
		t.Errorf("ConfigMap istio: discoveryAddress host %s is not in the serving certificate's SANs %v", host, sans)
	}
	var svc corev1.Service
	find(t, objs, "Service", "istiod", &svc)
	for _, p := range svc.Spec.Ports {
		if strconv.Itoa(int(p.Port)) == port {
			if p.TargetPort.IntVal != 15012 {
				t.Errorf("ConfigMap istio: discoveryAddress port %s reaches pod port %s, want the TLS port 15012", port, p.TargetPort.String())
			}
			return
		}
	}
	t.Errorf("ConfigMap istio: discoveryAddress port %s is not a port of Service istiod", port)
}
