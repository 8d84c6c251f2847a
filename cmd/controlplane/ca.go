package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/librarymesh/controlplane/certauthority"
	cakube "github.com/librarymesh/controlplane/certauthority/kube"
)

type caOptions struct {
	server      string // the server's HTTP address (/debug/ca)
	dataDir     string
	cacertsDir  string
	kubeconfig  string
	caNamespace string
	trustDomain string
	rootTTL     time.Duration
	force       bool
	wait        bool
	timeout     time.Duration
	poll        time.Duration
}

func newCACommand() *cobra.Command {
	cmd := &cobra.Command{Use: "ca", Short: "Inspect the certificate authority and rotate its root"}
	cmd.AddCommand(newCARotateCommand(), newCAStatusCommand())
	return cmd
}

func addCAServerFlag(cmd *cobra.Command, o *caOptions) {
	cmd.Flags().StringVar(&o.server, "server", "127.0.0.1:15014", "HTTP address of the server (its /debug/ca, served to loopback clients)")
}

func newCARotateCommand() *cobra.Command {
	o := caOptions{}
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Roll out a new root: trust it everywhere, sign with it, then drop the old one (resumable)",
		Long: `rotate records a new self-signed root next to the server's CA material (DATA_DIR/ca, or
Secret istio-ca-secret in Kubernetes); the server (the leader) then moves through three phases:
  trust-new  the bundle holds both roots; waits until every connected proxy ACKed it and every
             workload renewed into it
  sign-new   the new root signs; waits until no certificate from the old root can still be valid
             (the longest TTL, or every workload renewed; --force skips the wait)
  drop-old   the bundle holds the new root only; waits for the proxies' ACKs, then the new root
             replaces the old one in the store
Run it again to follow a rotation under way (with --force to force it).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCARotate(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	addCAServerFlag(cmd, &o)
	f.StringVar(&o.dataDir, "data-dir", "./data", "the server's --data-dir (file mode)")
	f.StringVar(&o.cacertsDir, "cacerts", "", "the server's --cacerts folder, if any (a plugged-in CA is not rotated here)")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig of the cluster (Kubernetes mode: the root is in istio-ca-secret)")
	f.StringVar(&o.caNamespace, "ca-namespace", envOr("POD_NAMESPACE", "istio-system"), "namespace of the CA Secrets in Kubernetes")
	f.StringVar(&o.trustDomain, "trust-domain", "cluster.local", "SPIFFE trust domain (the new root's organization)")
	f.DurationVar(&o.rootTTL, "root-ttl", certauthority.DefaultRootTTL, "validity of the new root")
	f.BoolVar(&o.force, "force", false, "do not wait in sign-new for the old root's certificates to expire")
	f.BoolVar(&o.wait, "wait", true, "follow the rotation until it is done, printing its progress")
	f.DurationVar(&o.timeout, "timeout", 0, "give up following after this long (0: never; the rotation goes on)")
	f.DurationVar(&o.poll, "poll", time.Second, "how often progress is read")
	return cmd
}

func newCAStatusCommand() *cobra.Command {
	o := caOptions{}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the trust bundle's roots with expiry, the signer, the rotation phase and which chain the workloads hold",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := fetchCAStatus(cmd.Context(), o.server)
			if err != nil {
				return err
			}
			writeCAStatus(cmd.OutOrStdout(), st)
			return nil
		},
	}
	addCAServerFlag(cmd, &o)
	return cmd
}

// rotateStores returns where the server keeps its root and its cacerts.
func rotateStores(o caOptions) (store, plugged certauthority.KeyStore, err error) {
	if o.kubeconfig == "" {
		cfg := certauthority.FileModeConfig(o.dataDir, o.cacertsDir)
		return cfg.Store, cfg.Plugged, nil
	}
	rest, err := kubeConfig(o.kubeconfig)
	if err != nil {
		return nil, nil, err
	}
	client, err := kubernetes.NewForConfig(rest)
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return cakube.SelfSignedSecret(client, o.caNamespace), cakube.PluggedSecret(client, o.caNamespace), nil
}

func runCARotate(ctx context.Context, out io.Writer, o caOptions) error {
	store, plugged, err := rotateStores(o)
	if err != nil {
		return err
	}
	r, started, err := certauthority.StartRotation(ctx, certauthority.RotateOptions{Store: store, Plugged: plugged,
		TrustDomain: o.trustDomain, RootTTL: o.rootTTL, Force: o.force})
	if err != nil {
		return fmt.Errorf("ca rotate: %w", err)
	}
	next, err := r.NextRootID()
	if err != nil {
		return fmt.Errorf("ca rotate: %w", err)
	}
	if started {
		fmt.Fprintf(out, "rotation to root %s recorded in %s; the server moves it on\n", next, store)
	} else {
		fmt.Fprintf(out, "a rotation to root %s is under way (phase %s, forced %v)\n", next, r.Phase, r.Force)
	}
	if !o.wait {
		return nil
	}
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	return followRotation(ctx, out, o, next)
}

// followRotation prints each change of progress until the bundle is the
// new root alone and no rotation is recorded.
func followRotation(ctx context.Context, out io.Writer, o caOptions, next string) error {
	t := time.NewTicker(o.poll)
	defer t.Stop()
	last := ""
	for {
		st, err := fetchCAStatus(ctx, o.server)
		line := ""
		switch {
		case err != nil:
			line = "cannot read the server's progress (retrying): " + err.Error()
		case st.Rotation == nil && len(st.Roots) == 1 && st.Roots[0].ID == next:
			fmt.Fprintf(out, "done: the trust bundle is root %s alone (expires %s)\n", next, st.Roots[0].Expiry.UTC().Format(time.RFC3339))
			return nil
		case st.Rotation != nil:
			line = fmt.Sprintf("phase %s: waiting for %s", st.Rotation.Phase, st.Rotation.Waiting)
		default:
			line = "waiting for the server to pick up the rotation"
		}
		if line != last {
			fmt.Fprintf(out, "%s  %s\n", time.Now().UTC().Format(time.TimeOnly), line)
			last = line
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ca rotate: stopped following (the rotation goes on; see controlplane ca status): %w", ctx.Err())
		case <-t.C:
		}
	}
}

func fetchCAStatus(ctx context.Context, addr string) (certauthority.Status, error) {
	var st certauthority.Status
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/debug/ca", nil)
	if err != nil {
		return st, fmt.Errorf("--server %s: %w", addr, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, fmt.Errorf("read CA status: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return st, fmt.Errorf("read CA status from %s: %s: %s", addr, resp.Status, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("read CA status from %s: %w", addr, err)
	}
	return st, nil
}

func writeCAStatus(out io.Writer, st certauthority.Status) {
	fmt.Fprintf(out, "trust bundle %s (this replica leads: %v)\n", st.Bundle, st.Leader)
	for _, r := range st.Roots {
		sign := ""
		if r.Signing {
			sign = "  (signing)"
		}
		fmt.Fprintf(out, "  root %s  %s  expires %s%s\n", r.ID, r.Subject, r.Expiry.UTC().Format(time.RFC3339), sign)
	}
	fmt.Fprintf(out, "signer %s, expires %s, plugged %v\n", st.SignerSubject, st.SignerExpiry.UTC().Format(time.RFC3339), st.Plugged)
	if r := st.Rotation; r != nil {
		fmt.Fprintf(out, "rotation phase %s: ready %v, waiting for %s\n", r.Phase, r.Ready, r.Waiting)
	} else {
		fmt.Fprintln(out, "no rotation under way")
	}
	fmt.Fprintln(out, "live workload certificates issued by this replica:")
	for _, w := range st.Workloads {
		fmt.Fprintf(out, "  %d under root %s, holding bundle %s\n", w.Count, w.Root, w.Bundle)
	}
}
