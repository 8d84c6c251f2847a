package server

import (
	"sync"
	"time"
)

// convergence measures, per proxy, the time from a registry change being
// observed to the proxy ACKing every type version that carries it.
type convergence struct {
	observe func(seconds float64)

	mu      sync.Mutex
	pending map[string]*pendingPush // node ID
}

type pendingPush struct {
	since    time.Time         // earliest change not yet ACKed
	versions map[string]string // type URL -> version to ACK
}

func newConvergence(observe func(float64)) *convergence {
	return &convergence{observe: observe, pending: map[string]*pendingPush{}}
}

// pushed records that node was given new versions of some types for a
// change observed at since.
func (c *convergence) pushed(nodeID string, since time.Time, versions map[string]string) {
	if len(versions) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.pending[nodeID]
	if p == nil {
		p = &pendingPush{since: since, versions: map[string]string{}}
		c.pending[nodeID] = p
	}
	if since.Before(p.since) {
		p.since = since
	}
	for t, v := range versions {
		p.versions[t] = v
	}
}

// acked records an ACK; when the node has ACKed every pending type, its
// convergence time is observed.
func (c *convergence) acked(nodeID, typeURL, version string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.pending[nodeID]
	if p == nil || p.versions[typeURL] != version {
		return
	}
	delete(p.versions, typeURL)
	if len(p.versions) == 0 {
		delete(c.pending, nodeID)
		c.observe(time.Since(p.since).Seconds())
	}
}

// forget drops a disconnected node.
func (c *convergence) forget(nodeID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.pending, nodeID)
}
