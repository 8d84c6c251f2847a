package nodeagent

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	networkingapi "istio.io/api/networking/v1alpha3"

	"github.com/librarymesh/controlplane/snapshot/bootstrap"
	"github.com/librarymesh/controlplane/vmbundle"
)

// Workload is the VM as the control plane sees it: set for a group
// bundle (ISTIO_META_AUTO_REGISTER_GROUP), whose VMs each bring their own
// IP and name.
type Workload struct {
	Group        string // the WorkloadGroup, in Config.Namespace
	IP           string // INSTANCE_IP, else the first non-loopback address
	Name         string // ISTIO_META_WORKLOAD_NAME, else the host name
	Network      string
	ClusterID    string
	Labels       map[string]string // ISTIO_METAJSON_LABELS
	PilotAddress string            // HOST:PORT of the TLS xDS port (PILOT_ADDRESS)
	// BootstrapFile is where Envoy's bootstrap for this VM is written
	// (CONTROLPLANE_ENVOY_BOOTSTRAP); empty writes none.
	BootstrapFile string
	// Probe is the group's readiness probe (mesh.yaml); nil: none.
	Probe *networkingapi.ReadinessProbe
}

// workloadFromBundle reads the group settings of a bundle; nil when the
// bundle is for one VM (it has no group). ip and name override; a
// bootstrap file in the bundle's state folder moves to stateDir.
func workloadFromBundle(b *vmbundle.Bundle, ip, name, stateDir string) (*Workload, error) {
	env := b.Env
	if env[vmbundle.EnvAutoRegisterGroup] == "" {
		return nil, nil
	}
	w := &Workload{Group: env[vmbundle.EnvAutoRegisterGroup], IP: firstSet(ip, env[vmbundle.EnvInstanceIP]),
		Name: firstSet(name, env[vmbundle.EnvWorkloadName]), Network: env[vmbundle.EnvNetwork], ClusterID: env[vmbundle.EnvClusterID],
		PilotAddress: firstSet(env[vmbundle.EnvPilotAddress], env[vmbundle.EnvCAAddr]), BootstrapFile: env[vmbundle.EnvBootstrapFile]}
	if dir := env[vmbundle.EnvStateDir]; stateDir != "" && dir != "" && filepath.Dir(w.BootstrapFile) == filepath.Clean(dir) {
		w.BootstrapFile = filepath.Join(stateDir, filepath.Base(w.BootstrapFile))
	}
	if s := env[vmbundle.EnvLabelsJSON]; s != "" {
		if err := json.Unmarshal([]byte(s), &w.Labels); err != nil {
			return nil, fmt.Errorf("%s %s: %w", vmbundle.FileClusterEnv, vmbundle.EnvLabelsJSON, err)
		}
	}
	if err := w.detect(); err != nil {
		return nil, err
	}
	mesh, err := os.ReadFile(filepath.Join(b.Dir, vmbundle.FileMesh))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if w.Probe, err = vmbundle.ReadProbe(mesh); err != nil {
		return nil, err
	}
	return w, nil
}

func firstSet(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// detect fills IP and name left unset from the VM itself.
func (w *Workload) detect() error {
	if w.IP == "" {
		ip, err := firstAddress()
		if err != nil {
			return err
		}
		w.IP = ip
	}
	if _, err := netip.ParseAddr(w.IP); err != nil {
		return fmt.Errorf("instance IP %q is not an IP address", w.IP)
	}
	if w.Name == "" {
		host, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("no workload name (%s) and no host name: %w", vmbundle.EnvWorkloadName, err)
		}
		w.Name, _, _ = strings.Cut(strings.ToLower(host), ".")
	}
	return nil
}

// firstAddress is the VM's first global unicast address, IPv4 first.
func firstAddress() (string, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", fmt.Errorf("find the VM's IP: %w", err)
	}
	var v6 string
	for _, a := range addrs {
		pfx, err := netip.ParsePrefix(a.String())
		if err != nil || !pfx.Addr().IsGlobalUnicast() {
			continue
		}
		if pfx.Addr().Is4() {
			return pfx.Addr().String(), nil
		}
		if v6 == "" {
			v6 = pfx.Addr().String()
		}
	}
	if v6 == "" {
		return "", fmt.Errorf("find the VM's IP: no global unicast address; set %s", vmbundle.EnvInstanceIP)
	}
	return v6, nil
}

// bootstrapOptions are Envoy's bootstrap settings for this VM.
func (a *Agent) bootstrapOptions() bootstrap.Options {
	w := a.cfg.Workload
	return bootstrap.Options{Name: w.Name, Namespace: a.cfg.Namespace, ServiceAccount: a.cfg.ServiceAccount, IP: w.IP,
		Labels: w.Labels, ClusterID: w.ClusterID, XDSAddress: w.PilotAddress, ServerName: a.cfg.ServerName,
		RootCertPath: filepath.Join(a.cfg.BundleDir, vmbundle.FileRootCert), SDSSocket: a.cfg.SDSSocket,
		AutoRegisterGroup: w.Group, Network: w.Network}
}

// writeBootstrap writes Envoy's bootstrap for this VM's IP and name.
func (a *Agent) writeBootstrap() error {
	path := a.cfg.Workload.BootstrapFile
	if path == "" {
		return nil
	}
	b, err := bootstrap.Bootstrap(a.bootstrapOptions())
	if err != nil {
		return err
	}
	data, err := bootstrap.MarshalYAML(b)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write Envoy bootstrap: %w", err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("write Envoy bootstrap: %w", err)
	}
	return nil
}
