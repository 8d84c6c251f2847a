package vmbundle

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	networkingapi "istio.io/api/networking/v1alpha3"
	"sigs.k8s.io/yaml"
)

// bootstrapPath is where Envoy reads its bootstrap on the VM: the bundle's
// file, or for a group the file each VM's agent writes in the state folder.
func (o BundleOptions) bootstrapPath() string {
	if o.Group != "" {
		return filepath.Join(o.StateDir, FileBootstrap)
	}
	return filepath.Join(o.InstallDir, FileBootstrap)
}

// workloadName is ISTIO_META_WORKLOAD_NAME: empty for a group (each VM's
// own host name).
func (o BundleOptions) workloadName() string {
	if o.Group != "" {
		return ""
	}
	return o.Name
}

// renderGroup returns the files of a group bundle: no bootstrap (each VM's
// agent writes its own) but Istio's mesh.yaml.
func renderGroup(o BundleOptions) (map[string][]byte, error) {
	mesh, err := MeshConfig(o)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{
		FileMesh:       mesh,
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
		if files[name], err = execute(tmpl, data); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// MeshConfig renders Istio's mesh.yaml for a group's VMs, as `istioctl x
// workload entry configure` does: defaultConfig with the discovery
// address, proxyMetadata (the ISTIO_META_* settings, so Istio's pilot-agent
// registers the VM too) and the group's readinessProbe.
func MeshConfig(opts BundleOptions) ([]byte, error) {
	o := opts.withDefaults()
	labels, _ := json.Marshal(o.Labels) // a map of strings always marshals
	def := map[string]any{
		"discoveryAddress": o.Address,
		"proxyMetadata": map[string]string{
			EnvAutoRegisterGroup: o.Group, EnvNetwork: o.Network, EnvClusterID: o.ClusterID,
			EnvInterception: "NONE", EnvLabelsJSON: string(labels), "CANONICAL_SERVICE": o.Labels["app"],
		},
	}
	if o.Probe != nil {
		raw, err := protojson.Marshal(o.Probe)
		if err != nil {
			return nil, fmt.Errorf("vm bundle: readiness probe: %w", err)
		}
		def["readinessProbe"] = json.RawMessage(raw)
	}
	out, err := yaml.Marshal(map[string]any{"defaultConfig": def})
	if err != nil {
		return nil, fmt.Errorf("vm bundle: %s: %w", FileMesh, err)
	}
	return append([]byte("# Istio mesh config for the VMs of WorkloadGroup "+o.Namespace+"/"+o.Group+
		" (written by `controlplane vm bundle --group`)\n"), out...), nil
}

// ReadProbe reads the readinessProbe of a bundle's mesh.yaml; nil when the
// file or the probe is absent.
func ReadProbe(data []byte) (*networkingapi.ReadinessProbe, error) {
	var mesh struct {
		DefaultConfig struct {
			ReadinessProbe json.RawMessage `json:"readinessProbe"`
		} `json:"defaultConfig"`
	}
	if err := yaml.Unmarshal(data, &mesh); err != nil {
		return nil, fmt.Errorf("%s: %w", FileMesh, err)
	}
	raw := mesh.DefaultConfig.ReadinessProbe
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	p := &networkingapi.ReadinessProbe{}
	if err := protojson.Unmarshal(raw, p); err != nil {
		return nil, fmt.Errorf("%s: defaultConfig.readinessProbe: %w", FileMesh, err)
	}
	return p, nil
}
