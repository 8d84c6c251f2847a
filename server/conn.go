package server

import (
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/proto"

	"github.com/librarymesh/controlplane/registry/autoregister"
	"github.com/librarymesh/controlplane/snapshot"
)

// conn is one xDS stream and the proxy on it: everything the server keeps
// of a connected proxy. It is made when the stream's first request names
// the node and dropped when the stream ends. Two streams that claim the
// same node ID are two conns and share nothing: each is built from its own
// node and metadata, and answers go to the stream that asked (Istio keys
// its connections the same way, by node ID and a counter).
//
// The stream goroutine owns the per-type protocol state (xdsStream); conn
// holds what the push loop, CSDS and the debug views also read, under mu.
type conn struct {
	id    string // node ID "-" counter, unique per server
	proxy *snapshot.Proxy
	// node is the node the proxy sent, encoded: only CSDS and debug views
	// read it, and decoded it is several times larger (an Istio sidecar's
	// metadata is a few hundred nested values).
	node        []byte
	delta       bool
	connectedAt time.Time
	caller      *Identity             // proven on the TLS port; nil on plaintext
	wake        chan streamEvent      // the stream's events (see serve), told of each new snapshot; nil without a stream
	push        func() bool           // the stream's pushInline; nil without a stream
	observe     func(seconds float64) // convergence histogram
	autoreg     *autoregister.Session // the WorkloadGroup registration; nil for other proxies
	// built is what the last snapshot built was made from, its parts found
	// consistent (the pusher's, under its mu): the next build keeps its
	// unchanged types and checks only what changed.
	built built

	mu       sync.Mutex
	closed   bool
	kind     string
	snap     *nodeSnapshot
	buildErr error
	types    [numTypes]typeRecord
	sentMask typeMask    // types sent at least once
	pending  pendingPush // versions pushed for a change and not ACKed yet
	// refusedSecrets are the gateway credentials left out, with why (logged once).
	refusedSecrets map[string]string
	// trustBundle is the trust bundle the snapshot was last built for.
	trustBundle string
}

// TypeStatus is what one connection was sent of one type and what it said.
type TypeStatus struct {
	TypeURL    string    `json:"typeURL"`
	Sent       string    `json:"sent,omitempty"`  // version last sent
	Acked      string    `json:"acked,omitempty"` // version last ACKed
	Nacked     string    `json:"nacked,omitempty"`
	NackError  string    `json:"nackError,omitempty"`
	SentAt     time.Time `json:"sentAt,omitzero"`
	AnsweredAt time.Time `json:"answeredAt,omitzero"`
	Responses  int       `json:"responses"`
}

// typeRecord is a TypeStatus as a connection keeps it: 64 bytes instead of
// 136, so a proxy's six types take 430 B less (a rejection is rare, and
// times need no monotonic reading).
type typeRecord struct {
	sent, acked        string
	sentAt, answeredAt int64 // Unix nanoseconds; 0 for never
	responses          int
	nack               *nackRecord // the version last rejected and why; nil for none
}

type nackRecord struct{ version, err string }

// status is the record as a TypeStatus of type i.
func (r *typeRecord) status(i int) TypeStatus {
	ts := TypeStatus{Sent: r.sent, Acked: r.acked, SentAt: unixTime(r.sentAt), AnsweredAt: unixTime(r.answeredAt), Responses: r.responses}
	if r.sent != "" {
		ts.TypeURL = xdsTypes[i]
	}
	if r.nack != nil {
		ts.Nacked, ts.NackError = r.nack.version, r.nack.err
	}
	return ts
}

// unixTime is the time of Unix nanoseconds n; zero for 0.
func unixTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// pendingPush is what a connection has yet to ACK of the changes pushed
// to it, for the convergence histogram. A value with no maps, so a push to
// a thousand proxies allocates nothing here.
type pendingPush struct {
	since    time.Time  // earliest change not yet ACKed
	versions typeValues // version to ACK, by typeIndex; "" for none
}

// connStatus is a copy of a connection's state for CSDS and debug views.
type connStatus struct {
	id          string
	node        []byte // encoded; see decodedNode
	proxy       *snapshot.Proxy
	caller      *Identity
	delta       bool
	connectedAt time.Time
	kind        string
	snap        *nodeSnapshot
	buildErr    error
	types       [numTypes]TypeStatus
	trustBundle string
}

// status copies the connection's state.
func (c *conn) status() connStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := connStatus{
		id: c.id, node: c.node, proxy: c.proxy, caller: c.caller, delta: c.delta, connectedAt: c.connectedAt,
		kind: c.kind, snap: c.snap, buildErr: c.buildErr, trustBundle: c.trustBundle,
	}
	for i := range c.types {
		st.types[i] = c.types[i].status(i)
	}
	return st
}

// decodedNode returns the connection's node, decoded afresh: the caller
// may change it.
func (st connStatus) decodedNode() *corev3.Node {
	n := &corev3.Node{}
	// The bytes were encoded from a node by this process.
	_ = proto.Unmarshal(st.node, n)
	return n
}

// snapshot returns the snapshot last set.
func (c *conn) snapshot() *nodeSnapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.snap
}

// setSnapshot stores a new snapshot; the caller wakes the stream. changed
// holds the versions that differ from the last snapshot; when since is set
// (a registry change, not the first build) the proxy is expected to ACK
// those of the types it was ever sent, and convergence is measured until
// it has.
func (c *conn) setSnapshot(snap *nodeSnapshot, changed typeValues, since time.Time) {
	c.mu.Lock()
	c.snap, c.buildErr = snap, nil
	if !since.IsZero() {
		for i := range changed {
			if c.sentMask&(1<<i) == 0 {
				changed[i] = ""
			}
		}
		c.pushedLocked(since, changed)
	}
	c.mu.Unlock()
}

// wakeStream tells the stream a response may be due; a wake already
// waiting is enough.
func (c *conn) wakeStream() {
	select {
	case c.wake <- streamEvent{}:
	default:
	}
}

// pushedLocked records versions to be ACKed for a change observed at since.
func (c *conn) pushedLocked(since time.Time, versions typeValues) {
	if versions.empty() {
		return
	}
	if c.pending.versions.empty() || since.Before(c.pending.since) {
		c.pending.since = since
	}
	for i, v := range versions {
		if v != "" {
			c.pending.versions[i] = v
		}
	}
}

// sent records a response of type i.
func (c *conn) sent(i int, version string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ts := &c.types[i]
	ts.sent, ts.sentAt = version, time.Now().UnixNano()
	ts.responses++
	c.sentMask |= 1 << i
	if ts.nack != nil && ts.nack.version != version {
		ts.nack = nil // a new version replaces the rejected one
	}
}

// answered records the ACK or NACK (isErr, with errText) of a version of
// type i. It reports whether a NACK is new: not the same version rejected
// with the same error before (worth a log line).
func (c *conn) answered(i int, version, errText string, isErr bool) (newNack bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ts := &c.types[i]
	ts.answeredAt = time.Now().UnixNano()
	if isErr {
		newNack = ts.nack == nil || ts.nack.version != version || ts.nack.err != errText
		if newNack {
			ts.nack = &nackRecord{version: version, err: errText}
		}
		return newNack
	}
	ts.acked, ts.nack = version, nil
	if c.pending.versions[i] == version {
		c.pending.versions[i] = ""
		if c.pending.versions.empty() {
			c.observe(time.Since(c.pending.since).Seconds())
		}
	}
	return false
}
