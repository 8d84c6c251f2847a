package main

import (
	"github.com/spf13/cobra"

	"github.com/librarymesh/controlplane/nodeagent"
)

func newAgentCommand() *cobra.Command {
	o := nodeagent.Options{}
	var logLevel string
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the VM node agent: get and renew the VM's certificate, serve it to Envoy over SDS",
		Long: `The agent makes the VM's private key, gets its first certificate with the bundle's
bootstrap token, then renews at half-life with its current certificate. It serves the
secrets "default" and "ROOTCA" to the local Envoy over SDS on a Unix socket. Settings
left unset come from the bundle's cluster.env.`,
		Example: `  controlplane agent --bundle /etc/controlplane`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(logLevel)
			if err != nil {
				return err
			}
			o.Logger = logger
			return nodeagent.Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Bundle, "bundle", "/etc/controlplane", "folder holding the bundle's root-cert.pem, bootstrap-token and cluster.env")
	f.StringVar(&o.SDSSocket, "sds-socket", "", "Unix socket to serve SDS on (default CONTROLPLANE_SDS_SOCKET from cluster.env)")
	f.StringVar(&o.OutputDir, "output-dir", "", "also write cert-chain.pem, key.pem, root-cert.pem here (default OUTPUT_CERTS from cluster.env)")
	f.StringVar(&o.StateDir, "state-dir", "", "folder keeping key and certificate across restarts (default CONTROLPLANE_STATE_DIR from cluster.env)")
	f.StringVar(&o.CAAddress, "ca-address", "", "HOST:PORT of the CA's TLS port (default CA_ADDR from cluster.env)")
	f.DurationVar(&o.CertTTL, "cert-ttl", 0, "certificate lifetime to ask for (default SECRET_TTL from cluster.env)")
	f.StringVar(&o.IP, "ip", "", "group bundle: this VM's IP (default INSTANCE_IP from cluster.env, else its first global address)")
	f.StringVar(&o.Name, "name", "", "group bundle: this VM's workload name (default ISTIO_META_WORKLOAD_NAME, else its host name)")
	f.StringVar(&o.DNSAddress, "dns-address", "", `answer DNS for mesh names here, UDP and TCP (default CONTROLPLANE_DNS_ADDR from cluster.env when ISTIO_META_DNS_CAPTURE=true; "off" for none)`)
	f.StringVar(&o.MetricsAddress, "metrics-address", "", `serve the agent's Prometheus metrics on /stats/prometheus and /metrics here (default CONTROLPLANE_METRICS_ADDR from cluster.env, 0.0.0.0:15020 in bundles; "off" for none)`)
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}
