package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	networkingapi "istio.io/api/networking/v1alpha3"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/librarymesh/controlplane/registry"
	"github.com/librarymesh/controlplane/registry/yamldir"
	"github.com/librarymesh/controlplane/vmbundle"
)

// findGroup reads WorkloadGroup ref (NAMESPACE/NAME) from the cluster, or
// from the YAML folder configDir, through the registry (so a group the
// server would refuse is refused here with the same problem).
func findGroup(ctx context.Context, ref, configDir string, restCfg *rest.Config) (*registry.WorkloadGroup, error) {
	ns, name, ok := strings.Cut(ref, "/")
	if !ok || ns == "" || name == "" {
		return nil, fmt.Errorf("--group %q: want NAMESPACE/NAME", ref)
	}
	store := registry.NewStore(nil)
	switch {
	case restCfg != nil:
		icfg := rest.CopyConfig(restCfg)
		icfg.ContentType, icfg.AcceptContentTypes = "", ""
		client, err := istioclient.NewForConfig(icfg)
		if err != nil {
			return nil, fmt.Errorf("istio client: %w", err)
		}
		wg, err := client.NetworkingV1().WorkloadGroups(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("--group %s: %w", ref, err)
		}
		if ps := store.Upsert("kube", wg); len(ps) > 0 {
			return nil, fmt.Errorf("--group %s: %v", ref, ps[0])
		}
	case configDir != "":
		for _, p := range yamldir.Load(configDir, store) {
			if p.Object == registry.KindWorkloadGroup+" "+ref {
				return nil, fmt.Errorf("--group %s: %v", ref, p)
			}
		}
	default:
		return nil, fmt.Errorf("--group %s: give --kubeconfig (the group is in the cluster) or --config-dir (the folder serve reads)", ref)
	}
	g := store.View().WorkloadGroup(ns, name)
	if g == nil {
		return nil, fmt.Errorf("--group %s: there is no WorkloadGroup %s", ref, ref)
	}
	return g, nil
}

// applyGroup fills the bundle from the group: identity, labels, ports,
// network and probe; IP and name are each VM's own.
func applyGroup(o *vmbundle.BundleOptions, g *registry.WorkloadGroup) {
	o.Namespace, o.Name, o.Group, o.IP = g.Namespace, g.Name, g.Name, ""
	o.ServiceAccount = g.Template.ServiceAccount
	if o.ServiceAccount == "" {
		o.ServiceAccount = "default"
	}
	o.Labels = map[string]string{}
	maps.Copy(o.Labels, g.Template.Labels)
	maps.Copy(o.Labels, g.Labels)
	o.Ports = nil
	for _, p := range slices.Sorted(maps.Values(g.Template.Ports)) {
		if !slices.Contains(o.Ports, p) {
			o.Ports = append(o.Ports, p)
		}
	}
	o.Network = g.Template.Network
	o.Probe = probeProto(g.Probe)
}

// probeProto is the group's probe as Istio's ReadinessProbe (mesh.yaml).
func probeProto(p *registry.Probe) *networkingapi.ReadinessProbe {
	if p == nil {
		return nil
	}
	out := &networkingapi.ReadinessProbe{
		InitialDelaySeconds: int32(p.InitialDelay.Seconds()), TimeoutSeconds: int32(p.Timeout.Seconds()),
		PeriodSeconds: int32(p.Period.Seconds()), SuccessThreshold: int32(p.SuccessThreshold), FailureThreshold: int32(p.FailureThreshold),
	}
	switch {
	case p.HTTPGet != nil:
		h := &networkingapi.HTTPHealthCheckConfig{Path: p.HTTPGet.Path, Port: p.HTTPGet.Port, Host: p.HTTPGet.Host, Scheme: p.HTTPGet.Scheme}
		for _, hd := range p.HTTPGet.Headers {
			h.HttpHeaders = append(h.HttpHeaders, &networkingapi.HTTPHeader{Name: hd.Name, Value: hd.Value})
		}
		out.HealthCheckMethod = &networkingapi.ReadinessProbe_HttpGet{HttpGet: h}
	case p.TCPSocket != nil:
		out.HealthCheckMethod = &networkingapi.ReadinessProbe_TcpSocket{TcpSocket: &networkingapi.TCPHealthCheckConfig{Host: p.TCPSocket.Host, Port: p.TCPSocket.Port}}
	case p.Exec != nil:
		out.HealthCheckMethod = &networkingapi.ReadinessProbe_Exec{Exec: &networkingapi.ExecHealthCheckConfig{Command: slices.Clone(p.Exec.Command)}}
	}
	return out
}
