package vmbundle

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"
	"time"

	networkingapi "istio.io/api/networking/v1alpha3"

	"github.com/librarymesh/controlplane/meshname"
	"github.com/librarymesh/controlplane/snapshot/bootstrap"
)

//go:embed templates/*.tmpl
var templates embed.FS

// Defaults for where the bundle lives on the VM.
const (
	DefaultInstallDir  = "/etc/controlplane"
	DefaultStateDir    = "/var/lib/controlplane"
	DefaultAgentBinary = "/usr/local/bin/controlplane"
	DefaultEnvoyBinary = "/usr/local/bin/envoy"
	DefaultUser        = "controlplane"
	DefaultTrustDomain = "cluster.local"
	DefaultCertTTL     = 24 * time.Hour
	// DefaultDNSAddress is where the agent answers DNS (Istio's agent DNS
	// port, unprivileged), DefaultDNSDomain the domain it answers for.
	DefaultDNSAddress = "127.0.0.1:15053"
	DefaultDNSDomain  = "cluster.local"
	// DefaultMetricsAddress is where the agent serves its Prometheus
	// metrics, on pilot-agent's port, for Prometheus off the VM.
	DefaultMetricsAddress = "0.0.0.0:15020"
)

// BundleOptions describe the VM and its control plane. RootPEM and Token
// come from the CA (the caller gets them).
type BundleOptions struct {
	Name           string
	Namespace      string
	ServiceAccount string
	IP             string // the VM's IP (node ID, INSTANCE_IPS)
	Labels         map[string]string
	Ports          []uint32 // ports the VM serves (ISTIO_INBOUND_PORTS); optional
	// Address is HOST:PORT of the control plane's TLS port (15012), usually the gateway.
	Address string
	// ServerName is the SNI and the SAN checked on the control plane's cert.
	ServerName   string
	RootPEM      []byte
	Token        string
	TrustDomain  string
	ClusterID    string
	IstioVersion string
	CertTTL      time.Duration // SECRET_TTL, default 24h
	SotW         bool          // state-of-the-world ADS instead of delta
	// Hosts writes a hosts file with lines that send the control plane's
	// names to GatewayIP (default: Address's host when it is an IP).
	Hosts     bool
	GatewayIP string
	// Paths on the VM.
	InstallDir  string // default /etc/controlplane
	StateDir    string // default /var/lib/controlplane
	SDSSocket   string // default /run/controlplane/workload-spiffe-uds/socket
	AgentBinary string // default /usr/local/bin/controlplane
	EnvoyBinary string // default /usr/local/bin/envoy
	User        string // default controlplane
	AccessLog   string // default /var/log/istio/istio.log (for the README)
	// Group makes a bundle for every VM of the WorkloadGroup Namespace/Group
	// (see group.go): Name is the group's, IP is empty, and each VM's agent
	// writes Envoy's bootstrap for its own IP and name.
	Group   string
	Network string
	// Probe is the group's readiness probe (mesh.yaml); nil for none.
	Probe *networkingapi.ReadinessProbe
}

func (o BundleOptions) withDefaults() BundleOptions {
	def := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	def(&o.ServerName, bootstrap.DefaultServerSNI)
	def(&o.TrustDomain, DefaultTrustDomain)
	def(&o.ClusterID, bootstrap.DefaultClusterID)
	def(&o.InstallDir, DefaultInstallDir)
	def(&o.StateDir, DefaultStateDir)
	def(&o.SDSSocket, bootstrap.DefaultSDSSocket)
	def(&o.AgentBinary, DefaultAgentBinary)
	def(&o.EnvoyBinary, DefaultEnvoyBinary)
	def(&o.User, DefaultUser)
	def(&o.AccessLog, "/var/log/istio/istio.log")
	if o.CertTTL == 0 {
		o.CertTTL = DefaultCertTTL
	}
	o.Labels = sidecarLabels(o.Labels)
	return o
}

// sidecarLabels are the VM's labels with security.istio.io/tlsMode=istio
// unless set: the VM runs a sidecar, so automatic mTLS reaches it with
// Istio mTLS (the node metadata's LABELS say so, as a pod sidecar's do).
func sidecarLabels(in map[string]string) map[string]string {
	if _, ok := in[meshname.TLSModeLabel]; ok {
		return in
	}
	out := maps.Clone(in)
	if out == nil {
		out = map[string]string{}
	}
	out[meshname.TLSModeLabel] = meshname.TLSModeIstio
	return out
}

func (o BundleOptions) check() error {
	if len(bytes.TrimSpace(o.RootPEM)) == 0 {
		return fmt.Errorf("vm bundle: the root certificate is empty")
	}
	if strings.TrimSpace(o.Token) == "" || strings.ContainsAny(strings.TrimSpace(o.Token), " \n\t") {
		return fmt.Errorf("vm bundle: the bootstrap token is empty or has spaces")
	}
	if o.Hosts && o.GatewayIP != "" {
		if _, err := netip.ParseAddr(o.GatewayIP); err != nil {
			return fmt.Errorf("vm bundle: gateway IP %q is not an IP address", o.GatewayIP)
		}
	}
	return nil
}

// WriteBundle writes every file of the bundle into dir (created 0700) and
// returns their names. Secrets (token) are 0600.
func WriteBundle(dir string, opts BundleOptions) ([]string, error) {
	o := opts.withDefaults()
	if err := o.check(); err != nil {
		return nil, err
	}
	files, err := renderFiles(o)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("vm bundle: create %s: %w", dir, err)
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		mode := os.FileMode(0o644)
		if name == FileToken {
			mode = 0o600
		}
		if err := os.WriteFile(filepath.Join(dir, name), files[name], mode); err != nil {
			return nil, fmt.Errorf("vm bundle: write %s: %w", name, err)
		}
	}
	return names, nil
}

// renderFiles returns the files of a VM's bundle, or of a group's.
func renderFiles(o BundleOptions) (map[string][]byte, error) {
	if o.Group != "" {
		return renderGroup(o)
	}
	return render(o)
}

// render returns the bundle's files by name.
func render(o BundleOptions) (map[string][]byte, error) {
	b, err := bootstrap.Bootstrap(bootstrap.Options{
		Name: o.Name, Namespace: o.Namespace, ServiceAccount: o.ServiceAccount, IP: o.IP,
		Labels: o.Labels, ClusterID: o.ClusterID, IstioVersion: o.IstioVersion,
		XDSAddress: o.Address, ServerName: o.ServerName, SotW: o.SotW,
		RootCertPath: filepath.Join(o.InstallDir, FileRootCert), SDSSocket: o.SDSSocket,
	})
	if err != nil {
		return nil, fmt.Errorf("vm bundle: %w", err)
	}
	bootYAML, err := bootstrap.MarshalYAML(b)
	if err != nil {
		return nil, fmt.Errorf("vm bundle: %w", err)
	}
	files := map[string][]byte{
		FileBootstrap:  bootYAML,
		FileRootCert:   o.RootPEM,
		FileToken:      []byte(strings.TrimSpace(o.Token) + "\n"),
		FileClusterEnv: []byte(ClusterEnv(o)),
	}
	data, err := templateData(o)
	if err != nil {
		return nil, err
	}
	tmpls := map[string]string{FileAgentUnit: "agent.service.tmpl", FileEnvoyUnit: "envoy.service.tmpl", FileReadme: "README.md.tmpl"}
	if o.Hosts {
		tmpls[FileHosts] = "hosts.tmpl"
	}
	for name, tmpl := range tmpls {
		out, err := execute(tmpl, data)
		if err != nil {
			return nil, err
		}
		files[name] = out
	}
	return files, nil
}

type tmplData struct {
	BundleOptions
	NodeID        string
	GatewayIP     string
	BootstrapPath string // where Envoy reads its bootstrap on the VM
	Files         map[string]string
}

func templateData(o BundleOptions) (tmplData, error) {
	d := tmplData{BundleOptions: o, NodeID: meshname.SidecarNodeID(o.IP, o.Name, o.Namespace, ""), GatewayIP: o.GatewayIP,
		BootstrapPath: o.bootstrapPath()}
	if o.Hosts && d.GatewayIP == "" {
		host, _, err := net.SplitHostPort(o.Address)
		if _, perr := netip.ParseAddr(host); err != nil || perr != nil {
			return d, fmt.Errorf("vm bundle: --hosts needs the gateway IP: %q is not IP:PORT (give the gateway IP)", o.Address)
		}
		d.GatewayIP = host
	}
	d.Files = map[string]string{"Bootstrap": FileBootstrap, "Root": FileRootCert, "Token": FileToken, "Env": FileClusterEnv,
		"AgentUnit": FileAgentUnit, "EnvoyUnit": FileEnvoyUnit, "Hosts": FileHosts, "Mesh": FileMesh}
	return d, nil
}

func execute(name string, data tmplData) ([]byte, error) {
	t, err := template.New(name).Option("missingkey=error").ParseFS(templates, "templates/"+name)
	if err != nil {
		return nil, fmt.Errorf("vm bundle: template %s: %w", name, err)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		return nil, fmt.Errorf("vm bundle: template %s: %w", name, err)
	}
	return buf.Bytes(), nil
}

// ClusterEnv renders cluster.env: Istio's variable names where they exist.
func ClusterEnv(opts BundleOptions) string {
	o := opts.withDefaults()
	labels := map[string]string{}
	for k, v := range o.Labels {
		labels[k] = v
	}
	lj, _ := json.Marshal(labels) // a map of strings always marshals
	ports := make([]string, 0, len(o.Ports))
	for _, p := range o.Ports {
		ports = append(ports, fmt.Sprint(p))
	}
	lines := []string{
		"# cluster.env: settings for the controlplane agent and Envoy on this VM.",
		"# Written by `controlplane vm bundle`. Istio's variable names where they exist.",
		kv(EnvCAAddr, o.Address), kv(EnvPilotAddress, o.Address), kv(EnvServerSAN, o.ServerName),
		kv(EnvRootCA, filepath.Join(o.InstallDir, FileRootCert)), kv(EnvTrustDomain, o.TrustDomain),
		kv(EnvNamespace, o.Namespace), kv(EnvSA, o.ServiceAccount), kv(EnvInstanceIP, o.IP),
		kv(EnvWorkloadName, o.workloadName()), kv(EnvClusterID, o.ClusterID), kv(EnvInterception, "NONE"),
		EnvLabelsJSON + "='" + string(lj) + "'", kv(EnvInboundPorts, strings.Join(ports, ",")),
		kv(EnvSecretTTL, o.CertTTL.String()), kv(EnvOutputCerts, filepath.Join(o.StateDir, "certs")),
		"# controlplane's own settings",
		kv(EnvTokenFile, filepath.Join(o.InstallDir, FileToken)), kv(EnvSDSSocket, o.SDSSocket),
		kv(EnvStateDir, o.StateDir), kv(EnvBootstrapFile, o.bootstrapPath()),
		"# the agent answers DNS for mesh names with loopback addresses where Envoy listens (see README.md)",
		kv(EnvDNSCapture, "true"), kv(EnvDNSAddr, DefaultDNSAddress), kv(EnvDNSDomains, DefaultDNSDomain),
		"# the agent's Prometheus metrics (/stats/prometheus); Envoy's are on 15090",
		kv(EnvMetricsAddr, DefaultMetricsAddress),
	}
	if o.Group != "" {
		lines = append(lines, "# the WorkloadGroup this VM registers itself from; INSTANCE_IP and",
			"# ISTIO_META_WORKLOAD_NAME left empty are the VM's own address and host name",
			kv(EnvAutoRegisterGroup, o.Group), kv(EnvNetwork, o.Network))
	}
	return strings.Join(lines, "\n") + "\n"
}

func kv(k, v string) string { return k + "=" + v }
