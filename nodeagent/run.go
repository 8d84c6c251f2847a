package nodeagent

import (
	"context"
	"log/slog"
	"time"
)

// Options are the flags of `controlplane agent`.
type Options struct {
	Bundle    string        // --bundle DIR (required)
	SDSSocket string        // --sds-socket; default CONTROLPLANE_SDS_SOCKET from cluster.env
	OutputDir string        // --output-dir; default OUTPUT_CERTS from cluster.env
	StateDir  string        // --state-dir; default CONTROLPLANE_STATE_DIR from cluster.env
	CAAddress string        // --ca-address; default CA_ADDR from cluster.env
	CertTTL   time.Duration // --cert-ttl; default SECRET_TTL from cluster.env
	IP        string        // --ip: a group VM's address (default INSTANCE_IP, else its own)
	Name      string        // --name: a group VM's name (default ISTIO_META_WORKLOAD_NAME, else its host name)
	// DNSAddress is --dns-address; default CONTROLPLANE_DNS_ADDR from
	// cluster.env when ISTIO_META_DNS_CAPTURE=true; "off" turns DNS off.
	DNSAddress string
	// MetricsAddress is --metrics-address; default CONTROLPLANE_METRICS_ADDR
	// from cluster.env; "off" turns the metrics server off.
	MetricsAddress string
	Logger         *slog.Logger
}

// Run is `controlplane agent --bundle DIR`: it blocks until ctx ends.
func Run(ctx context.Context, o Options) error {
	cfg, err := LoadConfig(o.Bundle)
	if err != nil {
		return err
	}
	override := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	override(&cfg.SDSSocket, o.SDSSocket)
	override(&cfg.OutputDir, o.OutputDir)
	override(&cfg.StateDir, o.StateDir)
	override(&cfg.CAAddress, o.CAAddress)
	override(&cfg.DNSAddress, o.DNSAddress)
	override(&cfg.MetricsAddress, o.MetricsAddress)
	if o.CertTTL > 0 {
		cfg.CertTTL = o.CertTTL
	}
	cfg.InstanceIP, cfg.WorkloadName = o.IP, o.Name
	cfg.Logger = o.Logger
	a, err := New(cfg)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}
