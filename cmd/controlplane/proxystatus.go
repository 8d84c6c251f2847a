package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/librarymesh/controlplane/server/status"
)

type proxyStatusOptions struct {
	addr    string
	timeout time.Duration
}

func newProxyStatusCommand() *cobra.Command {
	o := proxyStatusOptions{}
	cmd := &cobra.Command{
		Use:   "proxy-status",
		Short: "Show, per connected proxy and xDS type, whether it is SYNCED, STALE or NACKED (read through CSDS)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runProxyStatus(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	cmd.Flags().StringVar(&o.addr, "addr", "127.0.0.1:15010", "plaintext gRPC address of the control plane")
	cmd.Flags().DurationVar(&o.timeout, "timeout", 10*time.Second, "how long to wait for the answer")
	return cmd
}

func runProxyStatus(ctx context.Context, out io.Writer, o proxyStatusOptions) error {
	cc, err := grpc.NewClient(o.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
	if err != nil {
		return fmt.Errorf("dial %s: %w", o.addr, err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	proxies, err := status.Fetch(ctx, cc)
	if err != nil {
		return fmt.Errorf("%s: %w", o.addr, err)
	}
	return status.WriteTable(out, proxies)
}
