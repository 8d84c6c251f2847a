package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/librarymesh/controlplane/registry/register"
)

func newRegisterCommand() *cobra.Command {
	o := register.Options{}
	cmd := &cobra.Command{
		Use:   "register NAME IP PORT[:NAME[/PROTOCOL]]...",
		Short: "Register a VM's service in Kubernetes or the YAML folder (ServiceEntry, WorkloadEntry or Service)",
		Example: `  controlplane register postgres-1-vm 10.128.0.14 5432:tcp/TCP --namespace default \
    --service-account postgres --config-dir examples/library`,
		Args: cobra.MinimumNArgs(3),
		RunE: runWithOptions(&o, register.Run),
	}
	addRegisterFlags(cmd, &o)
	f := cmd.Flags()
	f.StringVar(&o.ServiceAccount, "service-account", "", "service account the VM runs as (its SPIFFE identity)")
	f.StringVar(&o.Labels, "labels", "", "labels of the VM as k=v,k2=v2 (app=NAME and security.istio.io/tlsMode=istio unless given: the VM runs a sidecar)")
	f.StringVar(&o.Locality, "locality", "", "locality of the VM as region/zone/subzone (zone and subzone optional), for locality load balancing")
	f.StringVar(&o.As, "as", string(register.AsServiceEntry), "objects to write: serviceentry, workloadentry or service")
	return cmd
}

func newDeregisterCommand() *cobra.Command {
	o := register.Options{}
	cmd := &cobra.Command{
		Use:   "deregister NAME",
		Short: "Remove the objects `register` wrote for a VM",
		Args:  cobra.ExactArgs(1),
		RunE:  runWithOptions(&o, register.RunDeregister),
	}
	addRegisterFlags(cmd, &o)
	return cmd
}

// runWithOptions is the RunE of register and deregister: it completes o
// with the arguments, output and logger, then calls run.
func runWithOptions(o *register.Options, run func(context.Context, register.Options) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		o.Positional, o.Out = args, cmd.OutOrStdout()
		logger, err := newLogger("info")
		if err != nil {
			return err
		}
		o.Logger = logger
		return run(cmd.Context(), *o)
	}
}

// addRegisterFlags adds the flags register and deregister share: where the
// objects go.
func addRegisterFlags(cmd *cobra.Command, o *register.Options) {
	f := cmd.Flags()
	f.StringVarP(&o.Namespace, "namespace", "n", "default", "namespace of the VM's service")
	f.StringVar(&o.ConfigDir, "config-dir", "", "write YAML into the folder `serve --config-dir` watches instead of Kubernetes")
	f.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig (default $KUBECONFIG, ~/.kube/config, or in-cluster)")
	f.StringVar(&o.Context, "context", "", "kubeconfig context (default the current one)")
}
