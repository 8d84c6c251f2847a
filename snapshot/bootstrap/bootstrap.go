// Package bootstrap builds the Envoy bootstrap for a VM joined to the mesh.
// It is pure: the caller marshals and writes the result.
package bootstrap

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/librarymesh/controlplane/meshname"
)

// Defaults of Options. Names shared with the node agent and the xDS
// snapshot (clusters, secrets, the node ID) come from meshname.
const (
	DefaultServerSNI = "istiod.istio-system.svc"
	DefaultClusterID = "Kubernetes"
	DefaultAdminPort = 15000
	// DefaultSDSSocket is where the agent serves SDS on a VM.
	DefaultSDSSocket = "/run/controlplane/workload-spiffe-uds/socket"
	// DefaultRootCertPath is where the bundle's root-cert.pem is installed on a VM.
	DefaultRootCertPath = "/etc/controlplane/root-cert.pem"
)

// Options describe one VM and where its control plane is.
type Options struct {
	Name           string            // workload name, e.g. postgres-1-vm
	Namespace      string            // e.g. default
	ServiceAccount string            // e.g. postgres
	IP             string            // the VM's instance IP
	Labels         map[string]string // workload labels
	ClusterID      string            // default "Kubernetes"
	IstioVersion   string            // reported as ISTIO_VERSION, e.g. "1.32.0"
	// XDSAddress is HOST:PORT of the control plane's TLS port (often the gateway).
	XDSAddress string
	// ServerName is the TLS SNI and the DNS SAN expected on the server cert
	// (default istiod.istio-system.svc).
	ServerName   string
	RootCertPath string // default DefaultRootCertPath
	SDSSocket    string // default DefaultSDSSocket
	AdminPort    uint32 // default 15000, bound on 127.0.0.1 only
	// StatsPort is where Envoy serves its Prometheus stats
	// (meshname.StatsPath) on all addresses; default meshname.StatsPort.
	StatsPort uint32
	// SotW selects state-of-the-world ADS (GRPC) instead of delta (DELTA_GRPC).
	SotW bool
	// DNSSuffix is the cluster DNS suffix, default svc.cluster.local.
	DNSSuffix string
	// AutoRegisterGroup names the WorkloadGroup the VM registers itself
	// from (metadata AUTO_REGISTER_GROUP); Network is metadata NETWORK.
	AutoRegisterGroup string
	Network           string
}

func (o Options) withDefaults() Options {
	if o.ClusterID == "" {
		o.ClusterID = DefaultClusterID
	}
	if o.ServerName == "" {
		o.ServerName = DefaultServerSNI
	}
	if o.RootCertPath == "" {
		o.RootCertPath = DefaultRootCertPath
	}
	if o.SDSSocket == "" {
		o.SDSSocket = DefaultSDSSocket
	}
	if o.AdminPort == 0 {
		o.AdminPort = DefaultAdminPort
	}
	if o.StatsPort == 0 {
		o.StatsPort = meshname.StatsPort
	}
	if o.DNSSuffix == "" {
		o.DNSSuffix = meshname.DefaultDNSSuffix
	}
	return o
}

// Bootstrap builds and validates the bootstrap for the VM.
func Bootstrap(opts Options) (*bootstrapv3.Bootstrap, error) {
	o := opts.withDefaults()
	if err := o.check(); err != nil {
		return nil, err
	}
	host, port, err := splitHostPort(o.XDSAddress)
	if err != nil {
		return nil, err
	}
	xds, err := xdsCluster(host, port, o)
	if err != nil {
		return nil, err
	}
	sds, err := sdsCluster(o.SDSSocket)
	if err != nil {
		return nil, err
	}
	stats, err := statsListener(o.StatsPort)
	if err != nil {
		return nil, err
	}
	b := &bootstrapv3.Bootstrap{
		Node: node(o),
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{
			Listeners: []*listenerv3.Listener{stats},
			Clusters:  []*clusterv3.Cluster{xds, sds, statsCluster(o.AdminPort)},
		},
		DynamicResources: dynamicResources(o.SotW),
		Admin:            admin(o.AdminPort),
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("bootstrap for %s/%s is invalid: %w", o.Namespace, o.Name, err)
	}
	return b, nil
}

func (o Options) check() error {
	for _, f := range []struct{ name, v string }{
		{"name", o.Name}, {"namespace", o.Namespace}, {"service account", o.ServiceAccount},
		{"IP", o.IP}, {"xDS address", o.XDSAddress},
	} {
		if f.v == "" {
			return fmt.Errorf("bootstrap: %s is empty", f.name)
		}
	}
	if _, err := netip.ParseAddr(o.IP); err != nil {
		return fmt.Errorf("bootstrap: IP %q is not an IP address", o.IP)
	}
	if o.StatsPort > 65535 || o.AdminPort > 65535 {
		return fmt.Errorf("bootstrap: admin port %d and stats port %d must be in 1-65535", o.AdminPort, o.StatsPort)
	}
	if o.StatsPort == o.AdminPort {
		return fmt.Errorf("bootstrap: stats port %d is the admin port", o.StatsPort)
	}
	return nil
}

func splitHostPort(addr string) (string, uint32, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("bootstrap: xDS address %q is not HOST:PORT: %w", addr, err)
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 || host == "" {
		return "", 0, fmt.Errorf("bootstrap: xDS address %q needs a host and a port in 1-65535", addr)
	}
	return host, uint32(n), nil
}

// Node is the VM's node as the bootstrap names it (ID and Istio metadata),
// for other clients of the control plane on the VM (the agent).
func Node(o Options) *corev3.Node { return node(o.withDefaults()) }

func node(o Options) *corev3.Node {
	labels := make(map[string]any, len(o.Labels))
	for k, v := range o.Labels {
		labels[k] = v
	}
	md := map[string]any{
		"NAMESPACE":         o.Namespace,
		"SERVICE_ACCOUNT":   o.ServiceAccount,
		"LABELS":            labels,
		"INSTANCE_IPS":      o.IP,
		"WORKLOAD_NAME":     o.Name,
		"INTERCEPTION_MODE": "NONE",
		"CLUSTER_ID":        o.ClusterID,
	}
	for k, v := range map[string]string{"ISTIO_VERSION": o.IstioVersion, "AUTO_REGISTER_GROUP": o.AutoRegisterGroup, "NETWORK": o.Network} {
		if v != "" {
			md[k] = v
		}
	}
	s, err := structpb.NewStruct(md)
	if err != nil {
		panic(fmt.Sprintf("bootstrap: node metadata of strings cannot fail: %v", err))
	}
	return &corev3.Node{
		Id:       meshname.SidecarNodeID(o.IP, o.Name, o.Namespace, o.DNSSuffix),
		Cluster:  o.Name + "." + o.Namespace,
		Metadata: s,
	}
}

func admin(port uint32) *bootstrapv3.Admin {
	return &bootstrapv3.Admin{Address: socketAddress("127.0.0.1", port)}
}

func socketAddress(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

const connectTimeout = time.Second
