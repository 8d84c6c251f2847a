// Package vmbundle writes the bundle a VM needs to join the mesh (Envoy bootstrap,
// root cert, bootstrap token, cluster.env, systemd units, README) and reads
// it back for the node agent.
package vmbundle

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Files of a bundle.
const (
	FileBootstrap  = "envoy-bootstrap.yaml"
	FileRootCert   = "root-cert.pem"
	FileToken      = "bootstrap-token"
	FileClusterEnv = "cluster.env"
	FileAgentUnit  = "controlplane-agent.service"
	FileEnvoyUnit  = "envoy.service"
	FileHosts      = "hosts"
	FileReadme     = "README.md"
	// FileMesh is Istio's mesh config of a group bundle (what `istioctl x
	// workload entry configure` writes): proxyMetadata and readinessProbe.
	FileMesh = "mesh.yaml"
)

// cluster.env keys. Istio's names where Istio has one (pilot-agent reads
// CA_ADDR, ISTIOD_SAN, CA_ROOT_CA, OUTPUT_CERTS, SECRET_TTL, TRUST_DOMAIN,
// POD_NAMESPACE, SERVICE_ACCOUNT, ISTIO_META_*), CONTROLPLANE_* otherwise.
const (
	EnvCAAddr        = "CA_ADDR"
	EnvPilotAddress  = "PILOT_ADDRESS"
	EnvServerSAN     = "ISTIOD_SAN"
	EnvRootCA        = "CA_ROOT_CA"
	EnvOutputCerts   = "OUTPUT_CERTS"
	EnvSecretTTL     = "SECRET_TTL"
	EnvTrustDomain   = "TRUST_DOMAIN"
	EnvNamespace     = "POD_NAMESPACE"
	EnvSA            = "SERVICE_ACCOUNT"
	EnvInstanceIP    = "INSTANCE_IP"
	EnvWorkloadName  = "ISTIO_META_WORKLOAD_NAME"
	EnvClusterID     = "ISTIO_META_CLUSTER_ID"
	EnvInterception  = "ISTIO_META_INTERCEPTION_MODE"
	EnvLabelsJSON    = "ISTIO_METAJSON_LABELS"
	EnvInboundPorts  = "ISTIO_INBOUND_PORTS"
	EnvTokenFile     = "CONTROLPLANE_BOOTSTRAP_TOKEN_FILE"
	EnvSDSSocket     = "CONTROLPLANE_SDS_SOCKET"
	EnvStateDir      = "CONTROLPLANE_STATE_DIR"
	EnvBootstrapFile = "CONTROLPLANE_ENVOY_BOOTSTRAP"
	// EnvAutoRegisterGroup names the WorkloadGroup the VM registers itself
	// from (Istio's; node metadata AUTO_REGISTER_GROUP).
	EnvAutoRegisterGroup = "ISTIO_META_AUTO_REGISTER_GROUP"
	EnvNetwork           = "ISTIO_META_NETWORK"
	// EnvDNSCapture (Istio's name) turns the agent's DNS for mesh names on;
	// EnvDNSAddr is where it listens, EnvDNSDomains (comma separated) what
	// it answers for.
	EnvDNSCapture = "ISTIO_META_DNS_CAPTURE"
	EnvDNSAddr    = "CONTROLPLANE_DNS_ADDR"
	EnvDNSDomains = "CONTROLPLANE_DNS_DOMAINS"
	// EnvMetricsAddr is where the agent serves its Prometheus metrics.
	EnvMetricsAddr = "CONTROLPLANE_METRICS_ADDR"
)

// Bundle is a bundle folder as the agent reads it.
type Bundle struct {
	Dir      string
	RootPEM  []byte
	Token    string
	Env      map[string]string
	EnvOrder []string // keys in file order
}

// ReadBundle reads DIR/root-cert.pem, DIR/bootstrap-token and DIR/cluster.env.
// A missing file is an error that names it.
func ReadBundle(dir string) (*Bundle, error) {
	b := &Bundle{Dir: dir}
	var err error
	if b.RootPEM, err = readRequired(dir, FileRootCert); err != nil {
		return nil, err
	}
	tok, err := readRequired(dir, FileToken)
	if err != nil {
		return nil, err
	}
	b.Token = strings.TrimSpace(string(tok))
	env, err := readRequired(dir, FileClusterEnv)
	if err != nil {
		return nil, err
	}
	if b.Env, b.EnvOrder, err = ParseEnv(env); err != nil {
		return nil, fmt.Errorf("bundle %s: %s: %w", dir, FileClusterEnv, err)
	}
	return b, nil
}

func readRequired(dir, name string) ([]byte, error) {
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return nil, fmt.Errorf("bundle %s is missing %s (write it with `controlplane vm bundle`): %w", dir, name, err)
	}
	return data, nil
}

// ParseEnv reads KEY=VALUE lines (systemd EnvironmentFile syntax without
// continuation lines); # comments and blank lines are skipped, and a value
// may be in single or double quotes.
func ParseEnv(data []byte) (map[string]string, []string, error) {
	env := map[string]string{}
	var order []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, nil, fmt.Errorf("line %d: %q is not KEY=VALUE", n, line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		if _, dup := env[k]; !dup {
			order = append(order, k)
		}
		env[k] = v
	}
	return env, order, sc.Err()
}
