package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/librarymesh/controlplane/certauthority"
	cakube "github.com/librarymesh/controlplane/certauthority/kube"
	"github.com/librarymesh/controlplane/meshname"
)

func newTokenCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Bootstrap tokens that prove a VM's identity to the certificate authority",
	}
	cmd.AddCommand(newTokenCreateCommand())
	return cmd
}

type tokenCreateOptions struct {
	certauthority.TokenCreateOptions
	kubeconfig  string
	caNamespace string
	logLevel    string
}

func newTokenCreateCommand() *cobra.Command {
	o := tokenCreateOptions{}
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Print a bootstrap token for --namespace/--service-account, signed by the CA of --data-dir (or of the cluster)",
		Long: "Prints a bootstrap token on stdout. A VM presents it (authorization: Bearer) to\n" +
			"IstioCertificateService/CreateCertificate to get its first certificate for\n" +
			meshname.SPIFFEID("TRUST_DOMAIN", "NAMESPACE", "SERVICE_ACCOUNT") + "; later renewals use that certificate.\n" +
			"The token is single-use unless --reusable, and is accepted only on the TLS port (15012).\n" +
			"Use the same --data-dir and --cacerts as `controlplane serve` (or --kubeconfig in Kubernetes mode).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(o.logLevel)
			if err != nil {
				return err
			}
			opts := o.TokenCreateOptions
			opts.Config.Logger = logger
			if o.kubeconfig != "" {
				restCfg, err := kubeConfig(o.kubeconfig)
				if err != nil {
					return err
				}
				client, err := kubernetes.NewForConfig(restCfg)
				if err != nil {
					return fmt.Errorf("kubernetes client: %w", err)
				}
				opts.Config = cakube.ModeConfig(client, o.caNamespace)
				opts.Config.Logger = logger
			}
			return certauthority.RunTokenCreate(cmd.Context(), opts, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Namespace, "namespace", "", "namespace of the identity the token proves")
	f.StringVar(&o.ServiceAccount, "service-account", "", "service account of the identity the token proves")
	f.DurationVar(&o.TTL, "ttl", 24*time.Hour, "how long the token is valid")
	f.BoolVar(&o.Reusable, "reusable", false, "let the token be used until it expires (default: single-use, refused after its first successful use)")
	f.StringVar(&o.DataDir, "data-dir", "./data", "the server's data folder (file mode)")
	f.StringVar(&o.CACertsDir, "cacerts", "", "the server's Istio cacerts folder, if it uses one")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "sign with the CA kept in the cluster (Kubernetes mode) instead of --data-dir")
	f.StringVar(&o.caNamespace, "ca-namespace", envOr("POD_NAMESPACE", "istio-system"), "namespace of the CA Secrets in Kubernetes")
	f.StringVar(&o.logLevel, "log-level", "warn", "debug, info, warn or error")
	_ = cmd.MarkFlagRequired("namespace")
	_ = cmd.MarkFlagRequired("service-account")
	return cmd
}
