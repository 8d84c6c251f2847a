package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"

	"github.com/librarymesh/controlplane/certauthority"
	"github.com/librarymesh/controlplane/leader"
	"github.com/librarymesh/controlplane/registry/kube"
)

// addLeaderFlags adds the leader-election flags to serve.
func addLeaderFlags(f *pflag.FlagSet, o *serveOptions) {
	f.BoolVar(&o.leaderElect, "leader-elect", true, "in Kubernetes, elect a leader (Lease "+leader.DefaultLeaseName+
		" in --ca-namespace) that alone creates the CA root, publishes root ConfigMaps and records Events")
	f.DurationVar(&o.leaseDuration, "leader-elect-lease-duration", leader.DefaultLeaseDuration,
		"how long a leader's lease lasts without renewal (the longest a crashed leader keeps the others waiting)")
}

// newElector returns the elector for Kubernetes mode, or nil when leader
// election is off (one replica does everything).
func newElector(client kubernetes.Interface, logger *slog.Logger, o serveOptions) (*leader.Elector, error) {
	if client == nil || !o.leaderElect {
		return nil, nil
	}
	e, err := leader.New(leader.Config{Client: client, Namespace: o.caNamespace, LeaseDuration: o.leaseDuration, Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("leader election: %w", err)
	}
	return e, nil
}

// withLeaderEvents makes the Kubernetes source record Events only on the
// leader. It returns the func that stops the recorder.
func withLeaderEvents(cfg *kube.Config, client kubernetes.Interface, e *leader.Elector) func() {
	if e == nil {
		return func() {}
	}
	rec, stop := kube.NewEventRecorder(client)
	cfg.EventRecorder = e.Recorder(rec)
	return stop
}

// withLeaderStore lets only the leader create the CA root; followers wait
// for it.
func withLeaderStore(cfg *certauthority.Config, e *leader.Elector, logger *slog.Logger) {
	if e != nil && cfg.Store != nil {
		cfg.Store = certauthority.LeaderCreates(cfg.Store, e.IsLeader, logger)
	}
}

// leaderOnly runs p only while this replica leads (always when e is nil).
func leaderOnly(e *leader.Elector, p part) part {
	if e == nil {
		return p
	}
	return partFunc(func(ctx context.Context) error {
		e.WhileLeading(func(ctx context.Context) { _ = p.Start(ctx) })
		<-ctx.Done()
		return nil
	})
}

type partFunc func(ctx context.Context) error

func (f partFunc) Start(ctx context.Context) error { return f(ctx) }
