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
	pending map[string]pendingPush // node ID
}

// pendingPush is what a proxy has yet to ACK. It is a value with no maps,
// so a push to a thousand proxies allocates nothing here.
type pendingPush struct {
	since    time.Time  // earliest change not yet ACKed
	versions typeValues // version to ACK, by typeIndex; "" for none
}

// typeValues holds one string per xDS type, by typeIndex.
type typeValues [5]string

func (v *typeValues) empty() bool { return *v == typeValues{} }

func newConvergence(observe func(float64)) *convergence {
	return &convergence{observe: observe, pending: map[string]pendingPush{}}
}

// pushed records that node was given new versions of some types for a
// change observed at since.
func (c *convergence) pushed(nodeID string, since time.Time, versions typeValues) {
	if versions.empty() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.pending[nodeID]
	if !ok || since.Before(p.since) {
		p.since = since
	}
	for i, v := range versions {
		if v != "" {
			p.versions[i] = v
		}
	}
	c.pending[nodeID] = p
}

// acked records an ACK; when the node has ACKed every pending type, its
// convergence time is observed.
func (c *convergence) acked(nodeID, typeURL, version string) {
	i := typeIndex(typeURL)
	if i < 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.pending[nodeID]
	if !ok || p.versions[i] != version {
		return
	}
	p.versions[i] = ""
	if !p.versions.empty() {
		c.pending[nodeID] = p
		return
	}
	delete(c.pending, nodeID)
	c.observe(time.Since(p.since).Seconds())
}

// forget drops a disconnected node.
func (c *convergence) forget(nodeID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.pending, nodeID)
}
