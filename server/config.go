package server

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/librarymesh/controlplane/registry"
	"github.com/librarymesh/controlplane/registry/autoregister"
	"github.com/librarymesh/controlplane/snapshot"
)

// Registry is what the server reads from the model; *registry.Store is one.
type Registry interface {
	// View returns the current immutable view of the model.
	View() registry.View
	// Subscribe returns a one-slot channel signalled after each commit, and
	// a function that ends the subscription.
	Subscribe() (<-chan struct{}, func())
	// ChangesSince returns what changed after revision rev, oldest first.
	ChangesSince(rev uint64) []registry.Change
	// Problems returns the input the registry could not use.
	Problems() []registry.Problem
}

// Builder translates one model revision into proxy resources. A Builder is
// made per revision and shares protos between the proxies it builds for.
type Builder interface {
	Build(p *snapshot.Proxy) (*snapshot.Resources, error)
	// Kind names the proxy's kind (pod sidecar, VM sidecar, proxyless gRPC).
	Kind(p *snapshot.Proxy) string
}

// PartsBuilder is a Builder that can return a proxy's resources as two
// parts: the one it shares with other proxies (the same protos, in the
// same slices) and its own. The server then keeps per proxy only its own
// part. The snapshot package's Builder is one.
type PartsBuilder interface {
	BuildParts(p *snapshot.Proxy) (shared, own *snapshot.Resources, err error)
}

// NewBuilderFunc makes the Builder for a view.
type NewBuilderFunc func(v registry.View, opts snapshot.Options) Builder

// SnapshotBuilder is the NewBuilderFunc of the snapshot package.
func SnapshotBuilder(v registry.View, opts snapshot.Options) Builder {
	return snapshotBuilder{snapshot.NewBuilder(v, opts)}
}

type snapshotBuilder struct{ *snapshot.Builder }

func (b snapshotBuilder) Kind(p *snapshot.Proxy) string { return b.Classify(p).String() }

// BuildKindParts returns the proxy's parts and its Kind, from one lookup.
func (b snapshotBuilder) BuildKindParts(p *snapshot.Proxy) (kind string, shared, own *snapshot.Resources, err error) {
	k, shared, own, err := b.Builder.BuildKindParts(p)
	if err != nil {
		return "", nil, nil, err
	}
	return k.String(), shared, own, nil
}

// kindPartsBuilder is a PartsBuilder that names a proxy's kind with its
// parts (snapshotBuilder is one): a rebuild then classifies a thousand
// proxies without a second lookup of each.
type kindPartsBuilder interface {
	BuildKindParts(p *snapshot.Proxy) (kind string, shared, own *snapshot.Resources, err error)
}

// Config configures a Server.
type Config struct {
	GRPCAddr string // e.g. ":15010"; "127.0.0.1:0" in tests
	HTTPAddr string // e.g. ":15014"; empty disables HTTP
	Logger   *slog.Logger
	Registry Registry
	// NewBuilder makes a Builder per model revision; default
	// snapshot.NewBuilder.
	NewBuilder      NewBuilderFunc
	SnapshotOptions snapshot.Options
	// Debounce is how long the push path waits for more changes after one
	// (default 100ms); MaxDebounce caps the wait under a steady stream of
	// changes (default 500ms).
	Debounce    time.Duration
	MaxDebounce time.Duration
	// DebounceQuiet is the wait for a change that comes after a quiet
	// spell (no push within Debounce): 0 (the default) pushes such a change
	// at once; changes that follow it soon are gathered for the next push.
	DebounceQuiet time.Duration
	// DebugOpen serves /debug/ to non-loopback clients too.
	DebugOpen bool
	// RegisterGRPC registers extra services (e.g. the CA) on every gRPC
	// server the Server runs.
	RegisterGRPC []func(grpc.ServiceRegistrar)
	// Prometheus is the registry /metrics serves; the server adds its
	// metrics to it. Nil means a registry of the server's own.
	Prometheus *prometheus.Registry
	// SourceChecks are asked on each /readyz whether the config sources
	// can be reached; the answer lists them.
	SourceChecks []SourceCheck
	// ShutdownGrace bounds GracefulStop when ctx ends (default 5s).
	ShutdownGrace time.Duration
	// SecretAuthorizer decides which gateway credentials (SDS secrets
	// `kubernetes://NAME`) a router proxy receives. Nil refuses them all.
	SecretAuthorizer SecretAuthorizer
	// SecretRecheck is how often the proxies refused a credential are
	// rebuilt, so that access granted later (a new RoleBinding) reaches
	// them without a restart (default 1m; SecretAuthorizer's own cache
	// should not keep answers longer).
	SecretRecheck time.Duration
	// AutoRegister registers the VMs of WorkloadGroups as they connect and
	// records their health reports (see autoregister.go); nil refuses
	// proxies that name a group.
	AutoRegister *autoregister.Controller
}

// SecretAuthorizer says whether a proxy's identity may read the Secrets
// of a namespace: nil when it may, else an error saying why not (a refusal
// or a failure to ask). In Kubernetes it asks the API server whether the
// service account may list secrets there, as Istio does.
type SecretAuthorizer interface {
	MayReadSecrets(ctx context.Context, namespace, serviceAccount, secretNamespace string) error
}

// AllowSecrets is the SecretAuthorizer of the YAML folder: whoever wrote
// the folder gave its Secrets to the gateways it configures.
type AllowSecrets struct{}

// MayReadSecrets always allows.
func (AllowSecrets) MayReadSecrets(context.Context, string, string, string) error { return nil }

func (c *Config) setDefaults() error {
	if c.Registry == nil {
		return errors.New("server: config has no Registry")
	}
	if c.NewBuilder == nil {
		c.NewBuilder = SnapshotBuilder
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Debounce <= 0 {
		c.Debounce = 100 * time.Millisecond
	}
	if c.MaxDebounce < c.Debounce {
		c.MaxDebounce = max(500*time.Millisecond, c.Debounce)
	}
	if c.SecretRecheck <= 0 {
		c.SecretRecheck = time.Minute
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = 5 * time.Second
	}
	return nil
}
