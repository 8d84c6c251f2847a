package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/librarymesh/controlplane/certauthority"
	cakube "github.com/librarymesh/controlplane/certauthority/kube"
	"github.com/librarymesh/controlplane/leader"
	"github.com/librarymesh/controlplane/preflight"
	"github.com/librarymesh/controlplane/registry"
	"github.com/librarymesh/controlplane/registry/autoregister"
	"github.com/librarymesh/controlplane/registry/kube"
	"github.com/librarymesh/controlplane/registry/yamldir"
	"github.com/librarymesh/controlplane/server"
	"github.com/librarymesh/controlplane/server/statuspage"
	"github.com/librarymesh/controlplane/snapshot"
)

type serveOptions struct {
	configDir      string
	dataDir        string
	cacertsDir     string
	kubeconfig     string
	namespaces     []string
	caNamespace    string
	grpcAddr       string
	secureGRPCAddr string
	httpAddr       string
	trustDomain    string
	extraSANs      []string
	debounce       time.Duration
	shutdownGrace  time.Duration
	secretRecheck  time.Duration
	configSettle   time.Duration
	configMaxBytes int64
	debugOpen      bool
	accessLogPath  string
	logLevel       string
	leaderElect    bool
	leaseDuration  time.Duration
	ca             caFlags
	caResync       time.Duration
	inject         injectFlags
	autoRegister   autoRegisterFlags
}

func newServeCommand() *cobra.Command {
	o := serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve xDS and the certificate authority from a YAML folder and/or a Kubernetes cluster",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(o.logLevel)
			if err != nil {
				return err
			}
			return runServe(cmd.Context(), logger, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.configDir, "config-dir", "", "folder of Kubernetes/Istio YAML to serve, watched for changes")
	f.StringVar(&o.dataDir, "data-dir", "./data", "folder for state (the CA root in file mode)")
	f.StringVar(&o.cacertsDir, "cacerts", "", "Istio cacerts folder (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem) whose intermediate signs")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig of the cluster to watch (in a pod the in-cluster config is used)")
	f.StringSliceVar(&o.namespaces, "namespaces", nil, "namespaces to watch in Kubernetes (default all)")
	f.StringVar(&o.caNamespace, "ca-namespace", envOr("POD_NAMESPACE", "istio-system"), "namespace of the CA Secrets in Kubernetes")
	f.StringVar(&o.grpcAddr, "grpc-addr", ":15010", "plaintext gRPC address (xDS, reflection, health, CSDS; the CA only with --ca-plaintext-tokens)")
	f.StringVar(&o.secureGRPCAddr, "secure-grpc-addr", ":15012", "gRPC over TLS address (empty disables)")
	f.StringVar(&o.httpAddr, "http-addr", ":15014", "HTTP address for the status page /, /metrics, /healthz, /readyz, /debug")
	f.StringVar(&o.trustDomain, "trust-domain", "cluster.local", "SPIFFE trust domain")
	f.StringSliceVar(&o.extraSANs, "extra-san", nil, "extra DNS names or IPs in the TLS serving certificate (e.g. the gateway address VMs dial)")
	f.DurationVar(&o.secretRecheck, "gateway-secret-recheck", time.Minute, "how long a gateway's access to Secrets (SubjectAccessReview) is remembered; gateways refused a credential are rechecked this often")
	f.DurationVar(&o.debounce, "debounce", 100*time.Millisecond, "how long changes in quick succession are gathered before a push (a lone change after a quiet spell is pushed at once; a steady stream is pushed at least every 500ms, or every --debounce if longer)")
	f.DurationVar(&o.configSettle, "config-settle", 20*time.Millisecond, "how long --config-dir must be quiet after a file event before the files are read")
	f.Int64Var(&o.configMaxBytes, "config-max-file-bytes", yamldir.DefaultMaxFileBytes, "largest file read from --config-dir; a larger one is reported and its last good objects stay")
	f.DurationVar(&o.shutdownGrace, "shutdown-grace", 5*time.Second, "on SIGTERM, how long calls in flight (CA requests) may take to finish after every connection got a GOAWAY and the xDS streams ended; then the server stops hard")
	f.BoolVar(&o.debugOpen, "debug-open", false, "serve /debug and the status page to non-loopback clients too")
	f.StringVar(&o.accessLogPath, "access-log", "/var/log/istio/istio.log", "Envoy access log file on VM sidecars")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	addLeaderFlags(f, &o)
	addCAFlags(f, &o.ca)
	f.DurationVar(&o.caResync, "ca-resync", certauthority.DefaultResyncInterval,
		"how often the CA re-reads its material: a changed cacerts is reloaded, a root rotation (controlplane ca rotate) moves on")
	addInjectFlags(f, &o.inject)
	addAutoRegisterFlags(f, &o.autoRegister)
	return cmd
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// kubeConfig returns the cluster to watch: --kubeconfig, or the in-cluster
// config when running in a pod, or nil.
func kubeConfig(path string) (*rest.Config, error) {
	if path != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			return nil, fmt.Errorf("--kubeconfig %s: %w", path, err)
		}
		return cfg, nil
	}
	if os.Getenv("KUBERNETES_SERVICE_HOST") == "" {
		return nil, nil
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("in-cluster config: %w", err)
	}
	return cfg, nil
}

// checkCluster fails within preflightTimeout when the cluster lacks the
// namespace or a permission the server cannot run without, and logs the
// missing permissions it can run without.
func checkCluster(ctx context.Context, logger *slog.Logger, restCfg *rest.Config, o serveOptions) error {
	ctx, cancel := context.WithTimeout(ctx, preflightTimeout)
	defer cancel()
	cfg := rest.CopyConfig(restCfg)
	cfg.QPS, cfg.Burst = 200, 200 // a few dozen access reviews, not throttled to client-go's 5/s
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	r := preflight.Check(ctx, client, o.caNamespace, preflight.Needs(preflight.Server{
		CANamespace: o.caNamespace, Watched: o.namespaces, LeaderElect: o.leaderElect, WebhookConfig: o.inject.webhookConfig}))
	r.LogMissing(logger)
	if r.Err != nil {
		return fmt.Errorf("cluster %s: %w", restCfg.Host, r.Err)
	}
	return nil
}

const preflightTimeout = 4 * time.Second

// part is anything with a blocking Start.
type part interface {
	Start(ctx context.Context) error
}

func runServe(ctx context.Context, logger *slog.Logger, o serveOptions) error {
	restCfg, err := kubeConfig(o.kubeconfig)
	if err != nil {
		return err
	}
	if o.configDir == "" && restCfg == nil {
		return errors.New("nothing to serve: give --config-dir, --kubeconfig, or run in a cluster")
	}
	reg := prometheus.NewRegistry()
	store := newStore(logger, reg, o)
	sources, err := yamlSources(logger, store, o)
	if err != nil {
		return err
	}
	var client kubernetes.Interface
	var elector *leader.Elector
	var secrets server.SecretAuthorizer = server.AllowSecrets{} // the folder's Secrets are its gateways'
	if restCfg != nil {
		if secrets, err = kube.NewSecretAccess(restCfg, o.secretRecheck); err != nil {
			return err
		}
		if client, err = kubernetes.NewForConfig(restCfg); err != nil {
			return fmt.Errorf("kubernetes client: %w", err)
		}
		if err := checkCluster(ctx, logger, restCfg, o); err != nil {
			return err
		}
		if elector, err = newElector(client, logger, o); err != nil {
			return err
		}
		kcfg := kube.Config{RestConfig: restCfg, Namespaces: o.namespaces, Store: store, Logger: logger, Registerer: reg}
		defer withLeaderEvents(&kcfg, client, elector)()
		src, err := kube.New(kcfg)
		if err != nil {
			return err
		}
		sources = append(sources, source{part: src, name: "kubernetes " + restCfg.Host, synced: src.HasSynced, check: apiReachable(client)})
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, ctx := errgroup.WithContext(ctx)
	if elector != nil {
		// Before the CA: a follower's CA waits for the leader's root.
		g.Go(func() error { return elector.Start(ctx) })
	}
	// fail stops the elector (releasing the lease) before returning err.
	fail := func(err error) error { cancel(); _ = g.Wait(); return err }
	ca, err := newCA(ctx, logger, reg, client, elector, o)
	if err != nil {
		return fail(err)
	}
	trustChanged := make(chan struct{}, 1)
	autoreg, err := newAutoRegister(logger, store, restCfg, client, reg, o)
	if err != nil {
		return fail(err)
	}
	servers, err := newServers(logger, store, ca, reg, client, secrets, sources, trustChanged, autoreg, o)
	if err != nil {
		return fail(err)
	}
	servers = append(servers, ca) // reloads CA material, drives a root rotation
	if client != nil {
		servers = append(servers, leaderOnly(elector, cakube.RootPublisher{Client: client, Namespaces: o.namespaces, Root: ca.RootPEM,
			Changed: trustChanged, Logger: logger}))
	}
	for _, s := range sources {
		g.Go(func() error { return s.Start(ctx) })
	}
	g.Go(func() error { return serveWhenSynced(ctx, logger, sources, servers) })
	return g.Wait()
}

// serveWhenSynced starts the servers once every source has loaded, so no
// proxy is handed a half-loaded mesh.
func serveWhenSynced(ctx context.Context, logger *slog.Logger, sources []source, servers []part) error {
	if err := waitSynced(ctx, sources); err != nil {
		return nil
	}
	logger.Info("sources synced; serving")
	sg, sctx := errgroup.WithContext(ctx)
	for _, p := range servers {
		sg.Go(func() error { return p.Start(sctx) })
	}
	return sg.Wait()
}

// newStore makes the registry and counts its suppressed problem log lines.
func newStore(logger *slog.Logger, reg prometheus.Registerer, o serveOptions) *registry.Store {
	store := registry.NewStore(logger, registry.WithTrustDomain(o.trustDomain))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "controlplane_config_problem_logs_suppressed_total",
		Help: "Problem log lines not written because of the log rate limit (the problems are in /debug/problems).",
	}, func() float64 { return float64(store.SuppressedProblemLogs()) }))
	return store
}

// yamlSources is the --config-dir source, if any.
func yamlSources(logger *slog.Logger, store *registry.Store, o serveOptions) ([]source, error) {
	if o.configDir == "" {
		return nil, nil
	}
	if st, err := os.Stat(o.configDir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("--config-dir %s: not a readable folder", o.configDir)
	}
	if o.configMaxBytes <= 0 {
		return nil, fmt.Errorf("--config-max-file-bytes %d: must be positive", o.configMaxBytes)
	}
	dir := yamldir.New(o.configDir, store, logger, yamldir.WithSettle(o.configSettle), yamldir.WithMaxFileBytes(o.configMaxBytes))
	return []source{{part: dir, name: "folder " + o.configDir, synced: func() bool { return isClosed(dir.Ready()) }}}, nil
}

// source is a registry source and how to tell it has loaded everything.
type source struct {
	part
	name   string // for the status page, e.g. "folder examples/library"
	synced func() bool
	check  func(context.Context) error // whether it can be reached now (/readyz); nil: always
}

// apiReachable asks the Kubernetes API server's /readyz.
func apiReachable(client kubernetes.Interface) func(context.Context) error {
	return func(ctx context.Context) error {
		_, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err
	}
}

// sourceChecks are the checks of the sources that have one.
func sourceChecks(sources []source) []server.SourceCheck {
	var out []server.SourceCheck
	for _, s := range sources {
		if s.check != nil {
			out = append(out, server.SourceCheck{Name: s.name, Check: s.check})
		}
	}
	return out
}

func waitSynced(ctx context.Context, sources []source) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		all := true
		for _, s := range sources {
			all = all && s.synced()
		}
		if all {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// newServers makes the xDS server with its status page and, when
// configured, its TLS port and the sidecar injection webhook.
func newServers(logger *slog.Logger, store *registry.Store, ca *certauthority.CA, reg *prometheus.Registry, client kubernetes.Interface,
	secrets server.SecretAuthorizer, sources []source, trustChanged chan<- struct{}, autoreg *autoregister.Controller, o serveOptions) ([]part, error) {
	srv, err := server.New(server.Config{
		GRPCAddr:        o.grpcAddr,
		HTTPAddr:        o.httpAddr,
		Logger:          logger,
		Registry:        store,
		SnapshotOptions: snapshot.Options{TrustDomain: o.trustDomain, RootNamespace: "istio-system", AccessLogPath: o.accessLogPath},
		Debounce:        o.debounce,
		DebugOpen:       o.debugOpen,
		RegisterGRPC:    []func(grpc.ServiceRegistrar){ca.Register},
		Prometheus:      reg,
		// Gateway credentials go to router proxies whose service account
		// may read them (SubjectAccessReview in Kubernetes).
		SecretAuthorizer: secrets,
		SecretRecheck:    o.secretRecheck,
		ShutdownGrace:    o.shutdownGrace,
		AutoRegister:     autoreg,
		SourceChecks:     sourceChecks(sources),
	})
	if err != nil {
		return nil, err
	}
	page, err := statuspage.New(statuspage.Config{
		Server: srv, Model: store, Sources: pageSources(sources), Gatherer: reg, RootPEM: ca.RootPEM, Logger: logger,
	})
	if err != nil {
		return nil, err
	}
	srv.SetStatusPage(page)
	wireTrust(srv, ca, trustChanged)
	if o.secureGRPCAddr != "" {
		if err := addSecureListener(o.secureGRPCAddr, srv, ca); err != nil {
			return nil, err
		}
	}
	injectors, err := injectParts(logger, client, ca, o)
	if err != nil {
		return nil, err
	}
	return append([]part{srv, autoRegisterPart{autoreg}}, injectors...), nil
}

// pageSources names the sources and their sync state for the status page.
func pageSources(sources []source) []statuspage.Source {
	out := make([]statuspage.Source, len(sources))
	for i, s := range sources {
		out[i] = statuspage.Source{Name: s.name, Synced: s.synced}
	}
	return out
}

func newCA(ctx context.Context, logger *slog.Logger, reg prometheus.Registerer, client kubernetes.Interface, elector *leader.Elector, o serveOptions) (*certauthority.CA, error) {
	var cfg certauthority.Config
	if client != nil {
		cfg = cakube.ModeConfig(client, o.caNamespace)
		withLeaderStore(&cfg, elector, logger)
		if elector != nil {
			cfg.IsLeader = elector.IsLeader
		}
	} else {
		cfg = certauthority.FileModeConfig(o.dataDir, o.cacertsDir)
	}
	cfg.TrustDomain = o.trustDomain
	cfg.ExtraServingSANs = o.extraSANs
	cfg.Registerer = reg
	cfg.Logger = logger
	cfg.ResyncInterval = o.caResync
	o.ca.apply(&cfg)
	ca, err := certauthority.New(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("certificate authority: %w", err)
	}
	return ca, nil
}

// addSecureListener serves the same services on addr over TLS with a
// certificate from our CA; xDS and CSDS there need a proven identity.
func addSecureListener(addr string, srv *server.Server, ca *certauthority.CA) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	authenticate := func(ctx context.Context) (server.Identity, error) {
		id, _, err := ca.Authenticate(ctx)
		return server.Identity{Namespace: id.Namespace, ServiceAccount: id.ServiceAccount}, err
	}
	srv.AddGRPCListener("gRPC over TLS", lis,
		grpc.Creds(credentials.NewTLS(ca.ServingTLSConfig())),
		grpc.ChainStreamInterceptor(server.RequireIdentity(authenticate)),
		grpc.ChainUnaryInterceptor(server.RequireIdentityUnary(authenticate)),
	)
	return nil
}
