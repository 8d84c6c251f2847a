// Package autoregister registers the VMs of a WorkloadGroup as they
// connect, as Istio's auto-registration does: a connecting proxy whose node
// names a group (AUTO_REGISTER_GROUP) and whose proven identity matches the
// group's service account gets a WorkloadEntry made from the group's
// template, kept while any replica holds one of its connections and
// deleted a grace period after the last one closed. The agent's health
// reports set the entry's Healthy condition. Only entries carrying Istio's
// istio.io/autoRegistrationGroup annotation are ever changed: manual
// WorkloadEntries are never touched.
//
// Where entries live is a Backend: the Kubernetes API (registry/kube), or
// the registry's store in file mode (StoreBackend).
package autoregister

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"

	"github.com/librarymesh/controlplane/registry"
)

// Defaults.
const (
	// DefaultGracePeriod is Istio's PILOT_WORKLOAD_ENTRY_GRACE_PERIOD.
	DefaultGracePeriod = 10 * time.Second
	// DefaultMaxWorkloads bounds the workloads one replica registers.
	DefaultMaxWorkloads = 1000
	writeTimeout        = 10 * time.Second
)

// Backend reads and writes WorkloadEntries.
type Backend interface {
	// Get returns the entry, or nil and no error when there is none.
	Get(ctx context.Context, namespace, name string) (*networkingv1.WorkloadEntry, error)
	Create(ctx context.Context, we *networkingv1.WorkloadEntry) error
	// Update writes metadata and spec; UpdateStatus writes the status.
	Update(ctx context.Context, we *networkingv1.WorkloadEntry) error
	UpdateStatus(ctx context.Context, we *networkingv1.WorkloadEntry) error
	// Delete deletes the entry if it is still the version given.
	Delete(ctx context.Context, we *networkingv1.WorkloadEntry) error
	// List returns the auto-registered entries (those with AnnotationGroup).
	List(ctx context.Context) ([]*networkingv1.WorkloadEntry, error)
}

// Replicas records which replicas are alive, so that the entries of a
// replica that died without marking them disconnected age out like any
// other (Kubernetes: a Lease per replica).
type Replicas interface {
	// Heartbeat records that replica instance is alive now.
	Heartbeat(ctx context.Context, instance string) error
	// LastSeen is the last heartbeat of instance; zero and no error when
	// it has none.
	LastSeen(ctx context.Context, instance string) (time.Time, error)
}

// Config configures a Controller.
type Config struct {
	Backend Backend
	// Groups finds a WorkloadGroup (the registry's current view).
	Groups func(namespace, name string) *registry.WorkloadGroup
	// Instance names this replica in AnnotationController.
	Instance string
	// GracePeriod is how long an entry outlives its last connection.
	GracePeriod time.Duration
	// MaxWorkloads bounds the workloads this replica registers (connected
	// or within their grace period); more are refused.
	MaxWorkloads int
	// Replicas, when set, gets this replica's heartbeat every sweep, and an
	// entry whose controller has had no heartbeat (nor connection) for
	// ReplicaTimeout (default 3 grace periods) is marked disconnected, to
	// be deleted a grace period later. Nil: entries of other replicas are
	// only deleted once they are marked disconnected.
	Replicas       Replicas
	ReplicaTimeout time.Duration
	Logger         *slog.Logger
	Metrics        *Metrics // nil: not counted
	Now            func() time.Time
}

// Controller registers connecting workloads. Its methods are safe for
// concurrent use.
type Controller struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	entries map[string]*entryState // by namespace/name
}

// entryState is what this replica knows of one entry: its connections here.
// mu serializes the writes of the entry (connect, health, disconnect).
type entryState struct {
	mu          sync.Mutex
	ns, name    string
	conns       int
	connectedAt time.Time // of the first of the current connections
	cleanup     *time.Timer
}

// New checks cfg and makes a Controller.
func New(cfg Config) (*Controller, error) {
	if cfg.Backend == nil || cfg.Groups == nil || cfg.Instance == "" {
		return nil, fmt.Errorf("autoregister: Backend, Groups and Instance are required")
	}
	if cfg.GracePeriod <= 0 {
		cfg.GracePeriod = DefaultGracePeriod
	}
	if cfg.ReplicaTimeout <= 0 {
		cfg.ReplicaTimeout = 3 * cfg.GracePeriod
	}
	if cfg.MaxWorkloads <= 0 {
		cfg.MaxWorkloads = DefaultMaxWorkloads
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Controller{cfg: cfg, log: cfg.Logger, entries: map[string]*entryState{}}, nil
}

// Session is one registered connection. Close it when the connection ends.
type Session struct {
	c     *Controller
	st    *entryState
	once  sync.Once
	probe bool // the group has a probe: health reports count
}

// Connect registers w's connection: it checks the group and the identity,
// then creates or takes over the entry (the first connection on this
// replica). The error is a gRPC status naming the group and the refusal.
func (c *Controller) Connect(ctx context.Context, w Workload) (*Session, error) {
	g := c.cfg.Groups(w.Namespace, w.Group)
	if err := checkWorkload(g, w); err != nil {
		c.cfg.Metrics.refused(reasonOf(err))
		return nil, err
	}
	st, err := c.lockEntry(w.Namespace, EntryName(w.Group, w.IP, w.Network))
	if err != nil {
		c.cfg.Metrics.refused("Limit")
		return nil, err
	}
	defer st.mu.Unlock()
	if st.conns == 0 {
		if err := c.connectLocked(ctx, st, g, w); err != nil {
			c.untrackIfIdle(st)
			c.cfg.Metrics.refused(reasonOf(err))
			return nil, err
		}
	}
	st.conns++
	return &Session{c: c, st: st, probe: g.Probe != nil}, nil
}

// checkWorkload refuses a workload whose group is missing or whose proven
// identity is not the group's.
func checkWorkload(g *registry.WorkloadGroup, w Workload) error {
	switch {
	case w.ServiceAccount == "":
		return status.Errorf(codes.Unauthenticated,
			"auto-registration of %s to WorkloadGroup %s/%s needs a proven identity: connect on the TLS port (15012) with the VM's certificate",
			w.ProxyID, w.Namespace, w.Group)
	case g == nil:
		return status.Errorf(codes.FailedPrecondition, "auto-registration of %s failed: there is no WorkloadGroup %s/%s",
			w.ProxyID, w.Namespace, w.Group)
	case g.Template.ServiceAccount != "" && g.Template.ServiceAccount != w.ServiceAccount:
		return status.Errorf(codes.PermissionDenied,
			"auto-registration of %s refused: WorkloadGroup %s/%s runs as service account %s/%s, but the caller proved %s/%s",
			w.ProxyID, g.Namespace, g.Name, g.Namespace, g.Template.ServiceAccount, w.Namespace, w.ServiceAccount)
	}
	return nil
}

func reasonOf(err error) string {
	return status.Code(err).String()
}

// track returns the state of entry ns/name, refusing a new one past MaxWorkloads.
func (c *Controller) track(ns, name string) (*entryState, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := ns + "/" + name
	if st := c.entries[key]; st != nil {
		return st, nil
	}
	if len(c.entries) >= c.cfg.MaxWorkloads {
		return nil, status.Errorf(codes.ResourceExhausted,
			"auto-registration of %s refused: this replica already registers %d workloads (--auto-register-max-workloads)",
			describe(ns, name), len(c.entries))
	}
	st := &entryState{ns: ns, name: name}
	c.entries[key] = st
	c.cfg.Metrics.setWorkloads(len(c.entries))
	return st, nil
}

// lockEntry returns the tracked state of ns/name, locked. A state that a
// cleanup forgot between tracking and locking is tracked anew.
func (c *Controller) lockEntry(ns, name string) (*entryState, error) {
	for {
		st, err := c.track(ns, name)
		if err != nil {
			return nil, err
		}
		st.mu.Lock()
		c.mu.Lock()
		current := c.entries[ns+"/"+name] == st
		c.mu.Unlock()
		if current {
			return st, nil
		}
		st.mu.Unlock()
	}
}

// untrackIfIdle forgets an entry without connections or pending cleanup.
// st.mu is held.
func (c *Controller) untrackIfIdle(st *entryState) {
	if st.conns > 0 || st.cleanup != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries[st.ns+"/"+st.name] == st {
		delete(c.entries, st.ns+"/"+st.name)
	}
	c.cfg.Metrics.setWorkloads(len(c.entries))
}

// connectLocked creates the entry, or takes over an auto-registered one
// (a reconnect, here or from another replica). st.mu is held.
func (c *Controller) connectLocked(ctx context.Context, st *entryState, g *registry.WorkloadGroup, w Workload) error {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	now := c.cfg.Now()
	if st.cleanup != nil {
		st.cleanup.Stop()
		st.cleanup = nil
	}
	we, err := c.cfg.Backend.Get(ctx, st.ns, st.name)
	if err != nil {
		return status.Errorf(codes.Unavailable, "auto-registration of %s: read %s: %v", w.ProxyID, describe(st.ns, st.name), err)
	}
	if we == nil {
		if err := c.cfg.Backend.Create(ctx, newEntry(g, w, st.name, c.cfg.Instance, now)); err != nil {
			return status.Errorf(codes.Unavailable, "auto-registration of %s: create %s: %v", w.ProxyID, describe(st.ns, st.name), err)
		}
		st.connectedAt = now
		c.cfg.Metrics.registered()
		c.log.Info("auto-registered workload", "object", describe(st.ns, st.name), "group", g.Ref(), "node", w.ProxyID)
		return nil
	}
	if err := checkTakeOver(we, w); err != nil {
		return err
	}
	setConnected(we, c.cfg.Instance, now)
	if err := c.cfg.Backend.Update(ctx, we); err != nil {
		return status.Errorf(codes.Unavailable, "auto-registration of %s: update %s: %v", w.ProxyID, describe(st.ns, st.name), err)
	}
	st.connectedAt = now
	c.log.Info("workload reconnected", "object", describe(st.ns, st.name), "group", g.Ref(), "node", w.ProxyID)
	return nil
}

// checkTakeOver refuses to touch a manual entry or one of another identity.
func checkTakeOver(we *networkingv1.WorkloadEntry, w Workload) error {
	if !isAutoRegistered(we) {
		return status.Errorf(codes.AlreadyExists,
			"auto-registration of %s refused: %s exists and was not auto-registered (no %s annotation); it is left alone",
			w.ProxyID, describe(we.Namespace, we.Name), AnnotationGroup)
	}
	if sa := we.Spec.GetServiceAccount(); sa != "" && sa != w.ServiceAccount {
		return status.Errorf(codes.PermissionDenied,
			"auto-registration of %s refused: %s runs as service account %s, but the caller proved %s/%s",
			w.ProxyID, describe(we.Namespace, we.Name), sa, w.Namespace, w.ServiceAccount)
	}
	return nil
}

// Close ends the session's connection. The last connection on this
// replica marks the entry disconnected (unless another replica took it
// over) and schedules its deletion after the grace period.
func (s *Session) Close() {
	s.once.Do(func() { s.c.disconnect(s.st) })
}

func (c *Controller) disconnect(st *entryState) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.conns--; st.conns > 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	now := c.cfg.Now()
	if err := c.markDisconnected(ctx, st, now); err != nil {
		c.log.Warn("cannot mark the workload disconnected; the sweep retries", "object", describe(st.ns, st.name), "error", err)
	}
	st.cleanup = time.AfterFunc(c.cfg.GracePeriod, func() { c.cleanup(st) })
}

// markDisconnected writes disconnectedAt if this replica still controls
// the entry from the connection that just closed. st.mu is held.
func (c *Controller) markDisconnected(ctx context.Context, st *entryState, now time.Time) error {
	we, err := c.cfg.Backend.Get(ctx, st.ns, st.name)
	if err != nil || we == nil || !isAutoRegistered(we) {
		return err
	}
	if we.Annotations[AnnotationController] != c.cfg.Instance || annotationTime(we, AnnotationConnectedAt).After(st.connectedAt) {
		return nil // reconnected to another replica since
	}
	setDisconnected(we, now)
	return c.cfg.Backend.Update(ctx, we)
}

// cleanup deletes the entry a grace period after its last connection here
// closed, unless it reconnected (here or elsewhere).
func (c *Controller) cleanup(st *entryState) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.cleanup = nil
	if st.conns > 0 {
		return
	}
	defer c.untrackIfIdle(st)
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	we, err := c.cfg.Backend.Get(ctx, st.ns, st.name)
	if err != nil {
		c.log.Warn("cannot read the workload's entry; the sweep retries", "object", describe(st.ns, st.name), "error", err)
		return
	}
	if we != nil && c.expired(we) {
		c.delete(ctx, we)
	}
}

// expired reports whether an auto-registered entry has been disconnected
// for the grace period.
func (c *Controller) expired(we *networkingv1.WorkloadEntry) bool {
	if !isAutoRegistered(we) || we.Annotations[AnnotationConnectedAt] != "" {
		return false
	}
	at := annotationTime(we, AnnotationDisconnectedAt)
	return !at.IsZero() && c.cfg.Now().Sub(at) >= c.cfg.GracePeriod
}

func (c *Controller) delete(ctx context.Context, we *networkingv1.WorkloadEntry) {
	if err := c.cfg.Backend.Delete(ctx, we); err != nil {
		c.log.Warn("cannot delete the workload's entry; the sweep retries", "object", describe(we.Namespace, we.Name), "error", err)
		return
	}
	c.cfg.Metrics.unregistered()
	c.log.Info("removed auto-registered workload after its grace period", "object", describe(we.Namespace, we.Name),
		"disconnected_at", we.Annotations[AnnotationDisconnectedAt])
}

// Health records a health report of the session's workload: the entry's
// Healthy condition, written when it changes and this replica controls
// the entry.
func (s *Session) Health(ctx context.Context, healthy bool, message string) error {
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	we, err := s.c.cfg.Backend.Get(ctx, st.ns, st.name)
	if err != nil || we == nil {
		return err
	}
	if we.Annotations[AnnotationController] != s.c.cfg.Instance || !setHealth(we, healthy, message, s.c.cfg.Now()) {
		return nil
	}
	if err := s.c.cfg.Backend.UpdateStatus(ctx, we); err != nil {
		return fmt.Errorf("health of %s: %w", describe(st.ns, st.name), err)
	}
	s.c.log.Info("workload health", "object", describe(st.ns, st.name), "healthy", healthy, "message", message)
	return nil
}

// Entry is "namespace/name" of the session's WorkloadEntry.
func (s *Session) Entry() string { return s.st.ns + "/" + s.st.name }

func timestamp(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }
