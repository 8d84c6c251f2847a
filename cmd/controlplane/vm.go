package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/librarymesh/controlplane/certauthority"
	cakube "github.com/librarymesh/controlplane/certauthority/kube"
	"github.com/librarymesh/controlplane/registry/register"
	"github.com/librarymesh/controlplane/vmbundle"
)

func newVMCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vm",
		Short: "Prepare VMs to join the mesh",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newVMBundleCommand())
	return cmd
}

// vmCAOptions say where `vm bundle` finds the CA: a data dir (file mode) or
// a Kubernetes cluster.
type vmCAOptions struct {
	dataDir, cacertsDir     string
	kubeconfig, caNamespace string
	labels, logLevel        string
	group, configDir        string
	reusable                bool
	ports                   []uint
}

func newVMBundleCommand() *cobra.Command {
	o := vmbundle.Options{}
	var c vmCAOptions
	cmd := &cobra.Command{
		Use:   "bundle",
		Short: "Write everything a VM needs: Envoy bootstrap, root cert, bootstrap token, cluster.env, systemd units",
		Example: `  controlplane vm bundle --name postgres-1-vm --namespace default --service-account postgres \
    --ip 10.128.0.14 --address 203.0.113.7:15012 --hosts -o postgres-1-vm-bundle`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(c.logLevel)
			if err != nil {
				return err
			}
			if o.Labels, err = register.ParseLabels(c.labels); err != nil {
				return fmt.Errorf("--labels: %w", err)
			}
			ca, err := bundleCA(cmd.Context(), logger, c, o.TrustDomain)
			if err != nil {
				return err
			}
			for _, p := range c.ports {
				o.Ports = append(o.Ports, uint32(p))
			}
			o.Out, o.SingleUse = cmd.OutOrStdout(), !c.reusable
			if c.group != "" {
				if err := bundleForGroup(cmd.Context(), &o, c); err != nil {
					return err
				}
			}
			return vmbundle.Run(cmd.Context(), o, ca)
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.group, "group", "", "NAMESPACE/NAME of a WorkloadGroup: one bundle for all its VMs, each registering itself with its own IP and name when it connects (the reusable token, identity, labels, ports and probe come from the group)")
	f.StringVar(&c.configDir, "config-dir", "", "file mode with --group: the folder serve reads, holding the WorkloadGroup")
	f.StringVar(&o.Name, "name", "", "workload name of the VM, e.g. postgres-1-vm")
	f.StringVarP(&o.Namespace, "namespace", "n", "default", "namespace of the VM")
	f.StringVar(&o.ServiceAccount, "service-account", "default", "service account the VM runs as")
	f.StringVar(&o.IP, "ip", "", "the VM's IP")
	f.StringVar(&c.labels, "labels", "", "labels of the VM as k=v,k2=v2 (security.istio.io/tlsMode=istio unless given: the VM runs a sidecar)")
	f.UintSliceVar(&c.ports, "ports", nil, "ports the VM serves (ISTIO_INBOUND_PORTS), e.g. 5432")
	f.StringVar(&o.Address, "address", "", "HOST:PORT of the control plane's TLS port (15012) as the VM reaches it, usually the gateway")
	f.StringVar(&o.ServerName, "server-name", "", "TLS server name of the control plane (default istiod.istio-system.svc)")
	f.StringVarP(&o.OutDir, "output", "o", "", "folder to write the bundle into")
	f.DurationVar(&o.TokenTTL, "token-ttl", vmbundle.DefaultTokenTTL, "how long the bootstrap token can be used for the first certificate")
	f.BoolVar(&c.reusable, "reusable", false, "let the bootstrap token be used until it expires (default: single-use; the agent needs it once, then renews with its certificate)")
	f.DurationVar(&o.CertTTL, "cert-ttl", vmbundle.DefaultCertTTL, "lifetime of the VM's certificates (SECRET_TTL)")
	f.BoolVar(&o.Hosts, "hosts", false, "also write /etc/hosts lines sending the control plane's names to the gateway")
	f.StringVar(&o.GatewayIP, "gateway-ip", "", "gateway IP for --hosts (default the host of --address)")
	f.BoolVar(&o.SotW, "sotw", false, "state-of-the-world ADS instead of delta")
	f.StringVar(&o.TrustDomain, "trust-domain", certauthority.DefaultTrustDomain, "SPIFFE trust domain")
	f.StringVar(&o.ClusterID, "cluster-id", "", "ISTIO_META_CLUSTER_ID (default Kubernetes)")
	f.StringVar(&o.StateDir, "vm-state-dir", "", "state folder on the VM (default "+vmbundle.DefaultStateDir+")")
	f.StringVar(&c.dataDir, "data-dir", "./data", "file mode: the data dir of `serve` (holds the CA)")
	f.StringVar(&c.cacertsDir, "cacerts", "", "file mode: Istio cacerts folder whose intermediate signs")
	f.StringVar(&c.kubeconfig, "kubeconfig", "", "Kubernetes mode: the CA lives in Secrets of this cluster")
	f.StringVar(&c.caNamespace, "ca-namespace", envOr("POD_NAMESPACE", "istio-system"), "Kubernetes mode: namespace of the CA Secrets")
	f.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

// bundleForGroup fills the bundle from the WorkloadGroup: the token may be
// used by every VM of the group until it expires.
func bundleForGroup(ctx context.Context, o *vmbundle.Options, c vmCAOptions) error {
	restCfg, err := kubeConfig(c.kubeconfig)
	if err != nil {
		return err
	}
	g, err := findGroup(ctx, c.group, c.configDir, restCfg)
	if err != nil {
		return err
	}
	applyGroup(&o.BundleOptions, g)
	o.SingleUse = false
	return nil
}

// bundleCA opens the CA the bundle's token and root come from.
func bundleCA(ctx context.Context, logger *slog.Logger, c vmCAOptions, trustDomain string) (*certauthority.CA, error) {
	var cfg certauthority.Config
	if c.kubeconfig != "" {
		restCfg, err := kubeConfig(c.kubeconfig)
		if err != nil {
			return nil, err
		}
		client, err := kubernetes.NewForConfig(restCfg)
		if err != nil {
			return nil, fmt.Errorf("kubernetes client: %w", err)
		}
		cfg = cakube.ModeConfig(client, c.caNamespace)
	} else {
		cfg = certauthority.FileModeConfig(c.dataDir, c.cacertsDir)
		cfg.PublishRootFile = "" // serve publishes it
	}
	cfg.TrustDomain, cfg.Logger = trustDomain, logger
	ca, err := certauthority.New(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("certificate authority: %w", err)
	}
	return ca, nil
}
