// Package nodeagent is the node agent that runs on a VM: it makes the VM's
// private key, gets a certificate from the control plane's CA (first with the
// bundle's bootstrap token, then renewing with its current certificate), and
// serves it to the local Envoy over SDS on a Unix socket.
package nodeagent

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/librarymesh/controlplane/meshname"
	"github.com/librarymesh/controlplane/snapshot/bootstrap"
	"github.com/librarymesh/controlplane/vmbundle"
)

// Off as DNSAddress or MetricsAddress turns that server off.
const Off = "off"

// Defaults.
const (
	DefaultRetryMin  = time.Second
	DefaultRetryMax  = time.Minute
	DefaultTimeout   = 10 * time.Second
	DefaultRootCheck = time.Minute
)

// Config configures an agent. LoadConfig fills it from a bundle's cluster.env;
// set fields override.
type Config struct {
	BundleDir  string // holds root-cert.pem, bootstrap-token, cluster.env
	SDSSocket  string // Unix socket for Envoy's SDS (CONTROLPLANE_SDS_SOCKET)
	OutputDir  string // optional: cert-chain.pem, key.pem, root-cert.pem for other software (OUTPUT_CERTS)
	StateDir   string // keeps key and cert across restarts (CONTROLPLANE_STATE_DIR); optional
	CAAddress  string // HOST:PORT of the CA's TLS port (CA_ADDR)
	ServerName string // expected server name (ISTIOD_SAN)
	CertTTL    time.Duration
	// TrustDomain, Namespace and ServiceAccount name the identity the VM expects.
	TrustDomain    string
	Namespace      string
	ServiceAccount string
	RetryMin       time.Duration // first retry delay after a failed request (1s)
	RetryMax       time.Duration // longest retry delay (1m)
	Timeout        time.Duration // one CreateCertificate call (10s)
	// RootCheckInterval is how often root-cert.pem is re-read (1m).
	RootCheckInterval time.Duration
	// InstanceIP and WorkloadName override the VM's own address and name
	// for a group bundle (see Workload).
	InstanceIP, WorkloadName string
	// Workload is set by New for a group bundle.
	Workload *Workload
	// DNSAddress is where the agent answers DNS for mesh names (UDP and
	// TCP); empty: no DNS. cluster.env: CONTROLPLANE_DNS_ADDR when
	// ISTIO_META_DNS_CAPTURE=true.
	DNSAddress string
	DNSDomains []string // CONTROLPLANE_DNS_DOMAINS; default cluster.local
	// MetricsAddress is where the agent serves its Prometheus metrics
	// (MetricsPaths); empty: nowhere. cluster.env: CONTROLPLANE_METRICS_ADDR.
	// "off" in DNSAddress or MetricsAddress turns the cluster.env value off.
	MetricsAddress string
	Logger         *slog.Logger
	Now            func() time.Time
}

// LoadConfig reads the bundle's cluster.env into a Config.
func LoadConfig(bundleDir string) (Config, error) {
	b, err := vmbundle.ReadBundle(bundleDir)
	if err != nil {
		return Config{}, err
	}
	return Config{BundleDir: bundleDir}.fromEnv(b.Env)
}

// fromEnv fills the fields left empty from cluster.env.
func (c Config) fromEnv(env map[string]string) (Config, error) {
	for dst, key := range map[*string]string{
		&c.SDSSocket: vmbundle.EnvSDSSocket, &c.StateDir: vmbundle.EnvStateDir, &c.CAAddress: vmbundle.EnvCAAddr,
		&c.OutputDir:  vmbundle.EnvOutputCerts,
		&c.ServerName: vmbundle.EnvServerSAN, &c.TrustDomain: vmbundle.EnvTrustDomain,
		&c.Namespace: vmbundle.EnvNamespace, &c.ServiceAccount: vmbundle.EnvSA,
		&c.MetricsAddress: vmbundle.EnvMetricsAddr,
	} {
		if *dst == "" {
			*dst = env[key]
		}
	}
	if strings.EqualFold(env[vmbundle.EnvDNSCapture], "true") && c.DNSAddress == "" {
		c.DNSAddress = cmp.Or(env[vmbundle.EnvDNSAddr], vmbundle.DefaultDNSAddress)
	}
	if d := env[vmbundle.EnvDNSDomains]; d != "" && c.DNSDomains == nil {
		c.DNSDomains = strings.Split(d, ",")
	}
	if s := env[vmbundle.EnvSecretTTL]; s != "" && c.CertTTL == 0 {
		d, err := time.ParseDuration(s)
		if err != nil {
			return c, fmt.Errorf("bundle %s: %s %s=%q: %w", c.BundleDir, vmbundle.FileClusterEnv, vmbundle.EnvSecretTTL, s, err)
		}
		c.CertTTL = d
	}
	return c, nil
}

func (c Config) withDefaults() Config {
	for _, v := range []*string{&c.DNSAddress, &c.MetricsAddress} {
		if *v == Off {
			*v = ""
		}
	}
	def := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	def(&c.SDSSocket, bootstrap.DefaultSDSSocket)
	def(&c.ServerName, bootstrap.DefaultServerSNI)
	def(&c.TrustDomain, "cluster.local")
	if len(c.DNSDomains) == 0 {
		c.DNSDomains = []string{vmbundle.DefaultDNSDomain}
	}
	if c.RetryMin <= 0 {
		c.RetryMin = DefaultRetryMin
	}
	if c.RetryMax < c.RetryMin {
		c.RetryMax = max(DefaultRetryMax, c.RetryMin)
	}
	if c.RootCheckInterval <= 0 {
		c.RootCheckInterval = DefaultRootCheck
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// checkMetricsAddress refuses a metrics address that is not HOST:PORT
// with a port in 0-65535 (HOST may be empty: all addresses).
func (c Config) checkMetricsAddress() error {
	if c.MetricsAddress == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(c.MetricsAddress)
	if err == nil {
		_, err = strconv.ParseUint(port, 10, 16)
	}
	if err != nil {
		return fmt.Errorf("metrics address %q (--metrics-address or %s in %s) is not HOST:PORT: %w",
			c.MetricsAddress, vmbundle.EnvMetricsAddr, vmbundle.FileClusterEnv, err)
	}
	return nil
}

// SPIFFEID is the identity the agent's certificate must carry.
func (c Config) SPIFFEID() string {
	return meshname.SPIFFEID(c.TrustDomain, c.Namespace, c.ServiceAccount)
}

// TokenClaims are the parts of a bootstrap token the agent reads (it cannot
// check the signature; the CA does).
type TokenClaims struct {
	Namespace      string `json:"ns"`
	ServiceAccount string `json:"sa"`
	Expiry         int64  `json:"exp"`
	SingleUse      bool   `json:"single_use"`
}

// ParseToken checks that a bootstrap token is a compact JWS and reads its claims.
func ParseToken(token string) (TokenClaims, error) {
	var c TokenClaims
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return c, fmt.Errorf("bootstrap token is malformed: want three base64url parts separated by '.', got %d", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return c, fmt.Errorf("bootstrap token is malformed: payload is not base64url: %w", err)
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return c, fmt.Errorf("bootstrap token is malformed: payload is not JSON claims: %w", err)
	}
	if c.Namespace == "" || c.ServiceAccount == "" || c.Expiry == 0 {
		return c, fmt.Errorf("bootstrap token is malformed: it lacks ns, sa or exp")
	}
	return c, nil
}

// ExpiresAt is the token's expiry.
func (c TokenClaims) ExpiresAt() time.Time { return time.Unix(c.Expiry, 0) }
