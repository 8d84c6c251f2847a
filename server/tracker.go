package server

import (
	"log/slog"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// TypeStatus is what one proxy was sent of one type and what it said.
type TypeStatus struct {
	TypeURL      string    `json:"typeURL"`
	Sent         string    `json:"sent,omitempty"`  // version last sent
	Acked        string    `json:"acked,omitempty"` // version last ACKed
	Nacked       string    `json:"nacked,omitempty"`
	NackError    string    `json:"nackError,omitempty"`
	SentAt       time.Time `json:"sentAt,omitzero"`
	AnsweredAt   time.Time `json:"answeredAt,omitzero"`
	Responses    int       `json:"responses"`
	resourcesOut int
}

// ProxyStatus is one connected proxy.
type ProxyStatus struct {
	ID          string                 `json:"id"`
	Kind        string                 `json:"kind"`
	Streams     int                    `json:"streams"`
	Delta       bool                   `json:"delta"`
	ConnectedAt time.Time              `json:"connectedAt"`
	Types       map[string]*TypeStatus `json:"types"`
	node        *corev3.Node
	sentMask    uint8 // a bit per typeIndex: types sent at least once
}

// streamState is one xDS stream: its node. (The stream itself matches
// answers to the responses they answer.)
type streamState struct {
	nodeID string
	delta  bool
}

// streamKey names a stream.
type streamKey struct {
	id    int64
	delta bool
}

// tracker follows streams and proxies: what each was sent, what it ACKed
// and which version it rejected. The cache wrapper asks it for rejected
// versions so they are not resent. It is the single source for CSDS,
// /debug/syncz and the per-proxy metrics.
type tracker struct {
	log *slog.Logger

	mu      sync.Mutex
	streams map[streamKey]*streamState
	proxies map[string]*ProxyStatus
}

func newTracker(log *slog.Logger) *tracker {
	return &tracker{log: log, streams: map[streamKey]*streamState{}, proxies: map[string]*ProxyStatus{}}
}

// openStream records a stream's first request. It reports whether the
// node is newly connected (no other stream of it is open).
func (t *tracker) openStream(key streamKey, node *corev3.Node) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.streams[key] = &streamState{nodeID: node.GetId(), delta: key.delta}
	p, ok := t.proxies[node.GetId()]
	if !ok {
		p = &ProxyStatus{ID: node.GetId(), ConnectedAt: time.Now(), Types: map[string]*TypeStatus{}, node: node}
		t.proxies[node.GetId()] = p
	}
	p.Streams++
	p.Delta = p.Delta || key.delta
	return !ok
}

// setKind records the kind of a connected proxy.
func (t *tracker) setKind(nodeID, kind string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.proxies[nodeID]; p != nil {
		p.Kind = kind
	}
}

// sentTypes returns the types a node was sent at least once, a bit per
// typeIndex.
func (t *tracker) sentTypes(nodeID string) uint8 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.proxies[nodeID]; p != nil {
		return p.sentMask
	}
	return 0
}

// closeStream forgets a stream. It returns the node ID and whether that
// was the node's last stream.
func (t *tracker) closeStream(key streamKey) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.streams[key]
	if !ok {
		return "", false
	}
	delete(t.streams, key)
	p := t.proxies[s.nodeID]
	if p == nil {
		return s.nodeID, false
	}
	p.Streams--
	if p.Streams > 0 {
		return s.nodeID, false
	}
	delete(t.proxies, s.nodeID)
	return s.nodeID, true
}

// typeLocked returns the status of a type of a proxy, creating it.
func (p *ProxyStatus) typeLocked(typeURL string) *TypeStatus {
	ts := p.Types[typeURL]
	if ts == nil {
		ts = &TypeStatus{TypeURL: typeURL}
		p.Types[typeURL] = ts
	}
	return ts
}

// sent records a response to a node.
func (t *tracker) sent(nodeID, typeURL, version string, resources int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.proxies[nodeID]
	if p == nil {
		return
	}
	ts := p.typeLocked(typeURL)
	ts.Sent, ts.SentAt, ts.resourcesOut = version, time.Now(), resources
	ts.Responses++
	if i := typeIndex(typeURL); i >= 0 {
		p.sentMask |= 1 << i
	}
	if ts.Nacked != "" && ts.Nacked != version {
		// A new version replaces the rejected one.
		ts.Nacked, ts.NackError = "", ""
	}
}

// answered records a node's ACK or NACK (isErr, with errText) of the
// version of a type it was sent. It reports whether a NACK is new: not the
// same version rejected with the same error before (worth a log line).
func (t *tracker) answered(nodeID, typeURL, version, errText string, isErr bool) (newNack bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.proxies[nodeID]
	if p == nil {
		return false
	}
	ts := p.typeLocked(typeURL)
	ts.AnsweredAt = time.Now()
	if isErr {
		newNack = ts.Nacked != version || ts.NackError != errText
		ts.Nacked, ts.NackError = version, errText
		return newNack
	}
	ts.Acked = version
	ts.Nacked, ts.NackError = "", ""
	return false
}

// proxies returns a copy of every connected proxy's status.
func (t *tracker) list() []ProxyStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]ProxyStatus, 0, len(t.proxies))
	for _, p := range t.proxies {
		c := *p
		c.Types = make(map[string]*TypeStatus, len(p.Types))
		for k, v := range p.Types {
			vc := *v
			c.Types[k] = &vc
		}
		out = append(out, c)
	}
	return out
}
