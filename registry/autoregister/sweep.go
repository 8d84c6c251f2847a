package autoregister

import (
	"context"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
)

// Run sweeps every grace period until ctx ends, for what a connection's own
// cleanup could not do: an entry this replica controls with no connection
// here (it restarted, or a write failed) is marked disconnected, and an
// entry disconnected for the grace period is deleted (its cleanup failed or
// its replica is gone).
func (c *Controller) Run(ctx context.Context) error {
	t := time.NewTicker(c.cfg.GracePeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			c.sweep(ctx)
		}
	}
}

func (c *Controller) sweep(ctx context.Context) {
	entries, err := c.cfg.Backend.List(ctx)
	if err != nil {
		c.log.Warn("auto-registration sweep: cannot list WorkloadEntries", "error", err)
		return
	}
	for _, we := range entries {
		if !isAutoRegistered(we) || c.connectedHere(we) {
			continue
		}
		switch {
		case c.expired(we):
			c.delete(ctx, we)
		case we.Annotations[AnnotationController] == c.cfg.Instance && we.Annotations[AnnotationConnectedAt] != "":
			c.sweepOrphan(ctx, we)
		}
	}
}

// connectedHere reports whether this replica holds a connection of the
// entry or is about to clean it up.
func (c *Controller) connectedHere(we *networkingv1.WorkloadEntry) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.entries[we.Namespace+"/"+we.Name] != nil
}

// sweepOrphan marks an entry disconnected that this replica controls but
// holds no connection of.
func (c *Controller) sweepOrphan(ctx context.Context, we *networkingv1.WorkloadEntry) {
	setDisconnected(we, c.cfg.Now())
	if err := c.cfg.Backend.Update(ctx, we); err != nil {
		c.log.Warn("auto-registration sweep: cannot mark an entry disconnected", "object", describe(we.Namespace, we.Name), "error", err)
		return
	}
	c.log.Info("auto-registration sweep: no connection here; marked disconnected", "object", describe(we.Namespace, we.Name))
}
