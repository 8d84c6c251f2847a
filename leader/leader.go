// Package leader elects one leader among the control plane's replicas with a
// coordination.k8s.io Lease (client-go leaderelection). Every replica serves
// xDS and signs certificates; only the leader runs the tasks that write shared
// state: creating the CA root, publishing root ConfigMaps, recording Events.
package leader

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Defaults used when a Config field is left zero.
const (
	DefaultLeaseName     = "controlplane-leader"
	DefaultLeaseDuration = 15 * time.Second
)

// Config configures an Elector.
type Config struct {
	// Client reaches the API server. Required.
	Client kubernetes.Interface
	// Namespace holds the Lease (the server's own namespace). Required.
	Namespace string
	// LeaseName defaults to DefaultLeaseName.
	LeaseName string
	// Identity names this replica in the Lease (default Identity()).
	Identity string
	// LeaseDuration is how long a lease lasts without renewal: the longest a
	// crashed leader keeps the others waiting (default 15 s). The renew
	// deadline is two thirds of it and the retry period an eighth.
	LeaseDuration time.Duration
	// Logger defaults to discarding.
	Logger *slog.Logger
}

// Identity is $POD_NAME, or the host name plus a random suffix, so that
// two processes on one host never share an identity.
func Identity() string {
	if name := os.Getenv("POD_NAME"); name != "" {
		return name
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "controlplane"
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b) // crypto/rand never fails in Go 1.24+
	return host + "_" + hex.EncodeToString(b)
}

// Elector takes part in the election until its context ends.
type Elector struct {
	cfg     Config
	logger  *slog.Logger
	leading atomic.Bool

	mu    sync.Mutex
	term  context.Context // the current term's context while leading, else nil
	tasks []func(ctx context.Context)
	wg    sync.WaitGroup
}

// New checks cfg; nothing runs until Start.
func New(cfg Config) (*Elector, error) {
	if cfg.Client == nil || cfg.Namespace == "" {
		return nil, errors.New("leader: Client and Namespace are required")
	}
	if cfg.LeaseName == "" {
		cfg.LeaseName = DefaultLeaseName
	}
	if cfg.Identity == "" {
		cfg.Identity = Identity()
	}
	if cfg.LeaseDuration <= 0 {
		cfg.LeaseDuration = DefaultLeaseDuration
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Elector{cfg: cfg, logger: cfg.Logger.With("lease", cfg.Namespace+"/"+cfg.LeaseName, "identity", cfg.Identity)}, nil
}

// Identity is the name this replica writes into the Lease.
func (e *Elector) Identity() string { return e.cfg.Identity }

// IsLeader reports whether this replica holds the lease now.
func (e *Elector) IsLeader() bool { return e.leading.Load() }

// WhileLeading runs task in its own goroutine during every term this replica
// leads (also the current one), with a context that ends with the term.
// Tasks may be added before or after Start.
func (e *Elector) WhileLeading(task func(ctx context.Context)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tasks = append(e.tasks, task)
	if e.term != nil {
		e.runLocked(e.term, task)
	}
}

func (e *Elector) runLocked(ctx context.Context, task func(ctx context.Context)) {
	e.wg.Go(func() { task(ctx) })
}

// Start campaigns until ctx ends: after losing the lease (e.g. the API
// server was unreachable past the renew deadline) the replica stops its
// leader tasks and campaigns again. On return the lease is released, so a
// replica shutting down hands over at once instead of after LeaseDuration.
func (e *Elector) Start(ctx context.Context) error {
	e.logger.Info("leader election: campaigning", "lease_duration", e.cfg.LeaseDuration)
	defer e.wg.Wait()
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(e.electionConfig())
		if err != nil {
			return fmt.Errorf("leader election: %w", err)
		}
		le.Run(ctx) // returns when the term ends or ctx ends
	}
	return nil
}

func (e *Elector) electionConfig() leaderelection.LeaderElectionConfig {
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: e.cfg.Namespace, Name: e.cfg.LeaseName},
		Client:     e.cfg.Client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: e.cfg.Identity},
	}
	d := e.cfg.LeaseDuration
	return leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   d,
		RenewDeadline:   d * 2 / 3,
		RetryPeriod:     d / 8,
		ReleaseOnCancel: true,
		Name:            e.cfg.LeaseName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: e.startedLeading,
			OnStoppedLeading: func() {},
			OnNewLeader: func(id string) {
				if id != e.cfg.Identity {
					e.logger.Info("leader election: another replica leads", "leader", id)
				}
			},
		},
	}
}

// startedLeading runs in its own goroutine for the whole term: client-go
// cancels ctx when the term ends, before it calls OnStoppedLeading.
func (e *Elector) startedLeading(ctx context.Context) {
	e.mu.Lock()
	if ctx.Err() != nil { // the term ended before this goroutine ran
		e.mu.Unlock()
		return
	}
	e.term = ctx
	e.leading.Store(true)
	e.logger.Info("leader election: became the leader")
	for _, task := range e.tasks {
		e.runLocked(ctx, task)
	}
	e.mu.Unlock()
	<-ctx.Done()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.term = nil
	e.leading.Store(false)
	e.logger.Info("leader election: stopped leading")
}
