package autoregister

import (
	"context"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
)

// Run sweeps every grace period until ctx ends, for what a connection's own
// cleanup could not do: an entry this replica controls with no connection
// here (it restarted, or a write failed) is marked disconnected, one it
// holds a connection of but that another replica marked disconnected is
// marked connected again, an entry whose replica has had no heartbeat for
// ReplicaTimeout is marked disconnected, and an entry disconnected for the
// grace period is deleted (its cleanup failed or its replica is gone).
func (c *Controller) Run(ctx context.Context) error {
	c.heartbeat(ctx)
	t := time.NewTicker(c.cfg.GracePeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			c.heartbeat(ctx)
			c.sweep(ctx)
		}
	}
}

func (c *Controller) heartbeat(ctx context.Context) {
	if c.cfg.Replicas == nil {
		return
	}
	if err := c.cfg.Replicas.Heartbeat(ctx, c.cfg.Instance); err != nil && ctx.Err() == nil {
		c.log.Warn("auto-registration: cannot record this replica's heartbeat; other replicas may take its workloads for gone",
			"instance", c.cfg.Instance, "error", err)
	}
}

func (c *Controller) sweep(ctx context.Context) {
	entries, err := c.cfg.Backend.List(ctx)
	if err != nil {
		c.log.Warn("auto-registration sweep: cannot list WorkloadEntries", "error", err)
		return
	}
	seen := map[string]time.Time{} // last heartbeat by replica, read once per sweep
	for _, we := range entries {
		if !isAutoRegistered(we) {
			continue
		}
		if c.connectedHere(we) {
			c.keepConnected(ctx, we)
			continue
		}
		controller := we.Annotations[AnnotationController]
		switch {
		case c.expired(we):
			c.delete(ctx, we)
		case controller == c.cfg.Instance && we.Annotations[AnnotationConnectedAt] != "":
			c.sweepOrphan(ctx, we, "no connection here")
		case controller != "" && we.Annotations[AnnotationConnectedAt] != "" && c.replicaGone(ctx, we, controller, seen):
			c.sweepOrphan(ctx, we, "its replica "+controller+" has had no heartbeat for "+c.cfg.ReplicaTimeout.String())
		}
	}
}

// replicaGone reports whether the replica controlling we has shown no sign
// of life (heartbeat, or the entry's own connectedAt) for ReplicaTimeout.
func (c *Controller) replicaGone(ctx context.Context, we *networkingv1.WorkloadEntry, controller string, seen map[string]time.Time) bool {
	if c.cfg.Replicas == nil {
		return false
	}
	last, ok := seen[controller]
	if !ok {
		var err error
		if last, err = c.cfg.Replicas.LastSeen(ctx, controller); err != nil {
			c.log.Warn("auto-registration sweep: cannot read a replica's heartbeat", "instance", controller, "error", err)
			return false
		}
		seen[controller] = last
	}
	if at := annotationTime(we, AnnotationConnectedAt); at.After(last) {
		last = at
	}
	return c.cfg.Now().Sub(last) > c.cfg.ReplicaTimeout
}

// connectedHere reports whether this replica holds a connection of the
// entry or is about to clean it up.
func (c *Controller) connectedHere(we *networkingv1.WorkloadEntry) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.entries[we.Namespace+"/"+we.Name] != nil
}

// keepConnected marks an entry connected again that this replica holds a
// connection of and still controls, when another replica marked it
// disconnected (it missed this replica's heartbeats).
func (c *Controller) keepConnected(ctx context.Context, we *networkingv1.WorkloadEntry) {
	if we.Annotations[AnnotationConnectedAt] != "" || we.Annotations[AnnotationController] != c.cfg.Instance {
		return
	}
	st, err := c.lockEntry(we.Namespace, we.Name)
	if err != nil {
		return
	}
	defer st.mu.Unlock()
	if st.conns == 0 {
		c.untrackIfIdle(st)
		return
	}
	setConnected(we, c.cfg.Instance, st.connectedAt)
	if err := c.cfg.Backend.Update(ctx, we); err != nil {
		c.log.Warn("auto-registration sweep: cannot mark an entry connected again", "object", describe(we.Namespace, we.Name), "error", err)
		return
	}
	c.log.Warn("auto-registration sweep: an entry connected here was marked disconnected; marked connected again", "object", describe(we.Namespace, we.Name))
}

// sweepOrphan marks an entry disconnected that no live connection holds.
func (c *Controller) sweepOrphan(ctx context.Context, we *networkingv1.WorkloadEntry, why string) {
	setDisconnected(we, c.cfg.Now())
	if err := c.cfg.Backend.Update(ctx, we); err != nil {
		c.log.Warn("auto-registration sweep: cannot mark an entry disconnected", "object", describe(we.Namespace, we.Name), "error", err)
		return
	}
	c.log.Info("auto-registration sweep: marked disconnected", "object", describe(we.Namespace, we.Name), "reason", why)
}
