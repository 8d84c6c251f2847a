// Package kube is the Kubernetes source of the registry: client-go shared
// informers for Services, Pods, Namespaces and EndpointSlices, and Istio
// informers for ServiceEntries, WorkloadEntries, DestinationRules, Sidecars,
// VirtualServices, Gateways, PeerAuthentications and AuthorizationPolicies (v1 only: the CRDs serve every version from one
// storage, so objects written as v1beta1 arrive through v1 too). Event
// handlers only queue keys; workers read the object from the informer's
// cache and write it to the registry.Store under the origin "kube".
package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/librarymesh/controlplane/registry"
)

// Origin is the origin the source writes into the store.
const Origin = "kube"

// Config configures a Source.
type Config struct {
	// RestConfig reaches the API server. Required.
	RestConfig *rest.Config
	// Namespaces limits what is watched; empty means every namespace.
	Namespaces []string
	// Store receives the objects. Required.
	Store *registry.Store
	// Logger defaults to discarding.
	Logger *slog.Logger
	// EventRecorder records a Warning Event on each object with a problem.
	// When nil, the source records Events through RestConfig as the
	// component "controlplane".
	EventRecorder record.EventRecorder
	// Registerer receives the source's metrics; nil means none.
	Registerer prometheus.Registerer
	// Resync is the informers' resync period; 0 means none.
	Resync time.Duration
	// Workers is the number of queue workers (default 2).
	Workers int
}

// Source watches the Kubernetes API and writes what it sees to the Store.
type Source struct {
	cfg     Config
	logger  *slog.Logger
	kube    kubernetes.Interface
	istio   istioclient.Interface
	queue   workqueue.TypedRateLimitingInterface[key]
	kinds   map[string]*kind // by store kind
	order   []*kind          // in the order they are synced first
	scopes  []scope
	starts  []func(stop <-chan struct{})
	events  record.EventRecorder
	metrics *metrics
	synced  atomic.Bool
	started atomic.Bool

	reportedMu sync.Mutex
	reported   map[key]string // resourceVersion whose problems were reported
}

// New checks cfg and builds the clients and informers; nothing runs until
// Start.
func New(cfg Config) (*Source, error) {
	if cfg.RestConfig == nil || cfg.Store == nil {
		return nil, errors.New("kube source: RestConfig and Store are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	s := &Source{cfg: cfg, logger: cfg.Logger, kinds: map[string]*kind{}, reported: map[key]string{}}
	if err := s.newClients(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	s.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.DefaultTypedControllerRateLimiter[key](),
		workqueue.TypedRateLimitingQueueConfig[key]{Name: "controlplane-kube"})
	if err := s.newInformers(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Source) newClients() error {
	cfg := rest.CopyConfig(s.cfg.RestConfig)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return &patientTransport{next: rt, interval: 500 * time.Millisecond, logger: s.logger}
	})
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("kube source: kubernetes client: %w", err)
	}
	// The Istio types have no protobuf encoding: always speak JSON.
	icfg := rest.CopyConfig(cfg)
	icfg.ContentType, icfg.AcceptContentTypes = "", ""
	istio, err := istioclient.NewForConfig(icfg)
	if err != nil {
		return fmt.Errorf("kube source: istio client: %w", err)
	}
	s.kube, s.istio = kube, istio
	return nil
}

// HasSynced reports whether every informer has listed its objects and the
// store holds them.
func (s *Source) HasSynced() bool { return s.synced.Load() }

// Start runs the informers and workers until ctx ends. It returns an error
// only if it cannot start; a cancelled ctx returns nil.
func (s *Source) Start(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("kube source: Start called twice")
	}
	s.events = s.cfg.EventRecorder
	if s.events == nil {
		var stop func()
		s.events, stop = newRecorder(s.kube)
		defer stop()
	}
	defer s.queue.ShutDown()
	served, err := s.discoverIstio(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	if err := s.addIstioInformers(served); err != nil {
		return err
	}
	if err := s.addSecretInformers(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	for _, start := range s.starts {
		start(ctx.Done())
	}
	begin := time.Now()
	if !s.waitForSync(ctx) {
		return nil
	}
	n := s.initialSync()
	s.synced.Store(true)
	s.logger.Info("kube source: synced", "objects", n, "duration", time.Since(begin).Round(time.Millisecond))
	var wg sync.WaitGroup
	for range s.cfg.Workers {
		wg.Go(s.runWorker)
	}
	<-ctx.Done()
	s.queue.ShutDown()
	wg.Wait()
	return nil
}

func (s *Source) waitForSync(ctx context.Context) bool {
	var synced []cache.InformerSynced
	for _, k := range s.order {
		for _, inf := range k.informers {
			synced = append(synced, inf.HasSynced)
		}
	}
	return cache.WaitForCacheSync(ctx.Done(), synced...)
}

// initialSync writes every cached object once, so that HasSynced means the
// store holds the cluster's state. The queued keys of the same objects are
// then identical writes, which the store ignores. It returns the number of
// objects.
func (s *Source) initialSync() int {
	n := 0
	for _, k := range s.order {
		for _, inf := range k.informers {
			for _, k8sKey := range inf.GetStore().ListKeys() {
				ns, name, err := cache.SplitMetaNamespaceKey(k8sKey)
				if err != nil {
					continue
				}
				n++
				if err := s.sync(key{Kind: k.name, Namespace: ns, Name: name}); err != nil {
					s.logger.Error("kube source: initial sync", "error", err) // the queued key retries
				}
			}
		}
	}
	return n
}
