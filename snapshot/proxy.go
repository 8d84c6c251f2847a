package snapshot

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/librarymesh/controlplane/meshname"
	"github.com/librarymesh/controlplane/registry"
)

// ProxyType is the first part of an Istio node ID.
type ProxyType = meshname.ProxyType

// Proxy types Istio uses.
const (
	SidecarProxy = meshname.Sidecar
	RouterProxy  = meshname.Router
)

// Metadata is the Istio node metadata the control plane reads.
type Metadata struct {
	Namespace        string            // NAMESPACE
	ServiceAccount   string            // SERVICE_ACCOUNT
	Labels           map[string]string // LABELS
	InstanceIPs      []string          // INSTANCE_IPS (comma separated)
	WorkloadName     string            // WORKLOAD_NAME
	InterceptionMode string            // INTERCEPTION_MODE (REDIRECT, TPROXY, NONE)
	ClusterID        string            // CLUSTER_ID
	IstioVersion     string            // ISTIO_VERSION
	Generator        string            // GENERATOR ("grpc" for proxyless gRPC)
	// AutoRegisterGroup names the WorkloadGroup (in the proxy's namespace)
	// a VM registers itself from (AUTO_REGISTER_GROUP, from Istio's
	// ISTIO_META_AUTO_REGISTER_GROUP).
	AutoRegisterGroup string
	Network           string // NETWORK
}

// Proxy is a connected node as described by its node ID and metadata.
type Proxy struct {
	ID        string    // the whole node ID
	Type      ProxyType // sidecar or router
	IPs       []string  // the node ID's IP, then INSTANCE_IPS not already listed
	Name      string    // pod or workload name (first part of NAME.NAMESPACE)
	Namespace string    // from the node ID, or NAMESPACE metadata
	DNSDomain string    // e.g. default.svc.cluster.local
	// Locality is the node's `region/zone/subzone` (Envoy's node.locality,
	// grpc-go's bootstrap node.locality); the registry's locality of the
	// proxy's workload comes first where it has one, as in Istio.
	Locality string
	Metadata Metadata
	// DeltaADS is set by the server when the proxy's ADS stream is delta
	// (incremental) xDS. An Envoy sidecar then gets each HTTP port's
	// virtual hosts over VHDS, so a new service sends one virtual host
	// instead of the port's whole route configuration; VHDS exists only
	// in delta xDS. Proxyless gRPC clients (one route configuration per
	// host already) and gateways are not affected.
	DeltaADS bool

	// key is proxyKey's result, made by the first build: every change
	// rebuilds a thousand proxies, and the key sorts each one's labels.
	key atomic.Pointer[string]
}

// IsProxylessGRPC reports whether the node is a grpc-go xDS client rather than Envoy.
func (p *Proxy) IsProxylessGRPC() bool { return p.Metadata.Generator == "grpc" }

// ParseProxy reads an Istio node: its ID (meshname.ParseNodeID) and its
// metadata. The error names the part of the node ID that is wrong.
func ParseProxy(node *corev3.Node) (*Proxy, error) {
	id := node.GetId()
	n, err := meshname.ParseNodeID(id)
	if err != nil {
		return nil, err
	}
	p := &Proxy{ID: id, Type: n.Type, IPs: []string{n.IP.String()}, Name: n.Name, Namespace: n.Namespace, DNSDomain: n.DNSDomain}
	if l := node.GetLocality(); l != nil {
		p.Locality = registry.LocalityString(l.GetRegion(), l.GetZone(), l.GetSubZone())
	}
	md, err := parseMetadata(node.GetMetadata())
	if err != nil {
		return nil, fmt.Errorf("node id %q: metadata: %w", id, err)
	}
	p.Metadata = md
	if md.Namespace != "" && md.Namespace != p.Namespace {
		return nil, fmt.Errorf("node id %q: namespace %q differs from metadata NAMESPACE %q", id, p.Namespace, md.Namespace)
	}
	for _, s := range md.InstanceIPs {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("node id %q: metadata INSTANCE_IPS: %q is not an IP address", id, s)
		}
		if !slices.Contains(p.IPs, a.String()) {
			p.IPs = append(p.IPs, a.String())
		}
	}
	return p, nil
}

func parseMetadata(s *structpb.Struct) (Metadata, error) {
	var md Metadata
	if s == nil {
		return md, nil
	}
	str := func(key string) (string, error) {
		v, ok := s.GetFields()[key]
		if !ok {
			return "", nil
		}
		sv, ok := v.GetKind().(*structpb.Value_StringValue)
		if !ok {
			return "", fmt.Errorf("%s is not a string", key)
		}
		return sv.StringValue, nil
	}
	var err error
	for key, dst := range map[string]*string{
		"NAMESPACE": &md.Namespace, "SERVICE_ACCOUNT": &md.ServiceAccount,
		"WORKLOAD_NAME": &md.WorkloadName, "INTERCEPTION_MODE": &md.InterceptionMode,
		"CLUSTER_ID": &md.ClusterID, "ISTIO_VERSION": &md.IstioVersion, "GENERATOR": &md.Generator,
		"AUTO_REGISTER_GROUP": &md.AutoRegisterGroup, "NETWORK": &md.Network,
	} {
		if *dst, err = str(key); err != nil {
			return md, err
		}
	}
	ips, err := str("INSTANCE_IPS")
	if err != nil {
		return md, err
	}
	for _, ip := range strings.Split(ips, ",") {
		if ip = strings.TrimSpace(ip); ip != "" {
			md.InstanceIPs = append(md.InstanceIPs, ip)
		}
	}
	if v, ok := s.GetFields()["LABELS"]; ok {
		ls := v.GetStructValue()
		if ls == nil {
			return md, fmt.Errorf("LABELS is not a map")
		}
		md.Labels = make(map[string]string, len(ls.GetFields()))
		for k, lv := range ls.GetFields() {
			sv, ok := lv.GetKind().(*structpb.Value_StringValue)
			if !ok {
				return md, fmt.Errorf("LABELS[%s] is not a string", k)
			}
			md.Labels[k] = sv.StringValue
		}
	}
	return md, nil
}
