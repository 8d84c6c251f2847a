package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/librarymesh/controlplane/registry"
	"github.com/librarymesh/controlplane/registry/autoregister"
	"github.com/librarymesh/controlplane/registry/kube"
)

// autoRegisterFlags configure the auto-registration of WorkloadGroup VMs.
type autoRegisterFlags struct {
	grace        time.Duration
	maxWorkloads int
	instance     string
}

func addAutoRegisterFlags(f *pflag.FlagSet, o *autoRegisterFlags) {
	f.DurationVar(&o.grace, "auto-register-grace-period", autoregister.DefaultGracePeriod,
		"how long an auto-registered WorkloadEntry outlives the last connection of its VM (Istio's PILOT_WORKLOAD_ENTRY_GRACE_PERIOD)")
	f.IntVar(&o.maxWorkloads, "auto-register-max-workloads", autoregister.DefaultMaxWorkloads,
		"most WorkloadGroup VMs one replica registers (connected or within their grace period); more connections are refused")
	f.StringVar(&o.instance, "instance-id", defaultInstanceID(),
		"this replica's name in auto-registered WorkloadEntries (istio.io/workloadController); default POD_NAME, else HOST-PID")
}

func defaultInstanceID() string {
	if n := os.Getenv("POD_NAME"); n != "" {
		return n
	}
	host, err := os.Hostname()
	if err != nil {
		host = "controlplane"
	}
	return host + "-" + strconv.Itoa(os.Getpid())
}

// autoRegisterPart is the controller and its sweep, run with the servers.
type autoRegisterPart struct{ c *autoregister.Controller }

func (p autoRegisterPart) Start(ctx context.Context) error { return p.c.Run(ctx) }

// newAutoRegister makes the controller: entries are real WorkloadEntries in
// Kubernetes mode, with each replica's heartbeat in a Lease of the CA
// namespace; entries of the store in file mode (one replica, entries in
// its memory).
func newAutoRegister(logger *slog.Logger, store *registry.Store, restCfg *rest.Config, client kubernetes.Interface,
	reg prometheus.Registerer, so serveOptions) (*autoregister.Controller, error) {
	o := so.autoRegister
	var backend autoregister.Backend = autoregister.NewStoreBackend(store)
	var replicas autoregister.Replicas
	if restCfg != nil {
		b, err := kube.NewWorkloadEntries(restCfg)
		if err != nil {
			return nil, err
		}
		backend = b
		replicas = kube.ReplicaLeases{Client: client, Namespace: so.caNamespace, Duration: 3 * o.grace}
	}
	m, err := autoregister.NewMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("auto-registration metrics: %w", err)
	}
	return autoregister.New(autoregister.Config{
		Backend: backend, Instance: o.instance, GracePeriod: o.grace, MaxWorkloads: o.maxWorkloads, Replicas: replicas,
		Groups: func(ns, name string) *registry.WorkloadGroup { return store.View().WorkloadGroup(ns, name) },
		Logger: logger, Metrics: m,
	})
}
