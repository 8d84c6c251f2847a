// Command controlplane is a lightweight, Istio-compatible xDS control plane.
// This package only wires the parts together; the logic lives in registry,
// snapshot, server and certauthority.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "controlplane:", err)
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "controlplane",
		Short:         "A lightweight, Istio-compatible xDS control plane for pods and VMs",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServeCommand())
	root.AddCommand(newProxyStatusCommand())
	root.AddCommand(newTokenCommand())
	root.AddCommand(newRegisterCommand(), newDeregisterCommand(), newVMCommand(), newAgentCommand())
	root.AddCommand(newCACommand())
	return root
}

// newLogger returns a text logger on stderr at the named level.
func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}
