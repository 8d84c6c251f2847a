package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"sync/atomic"
	"time"

	statusv3 "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"

	"github.com/librarymesh/controlplane/registry"
)

// This file is what the status page (server/statuspage) reads: the same
// sources as CSDS and the /debug views, exported, so that a proxy's state
// is computed in one place (genericConfig) for all of them.

// ClientStatus returns what CSDS reports for every connection, with one
// entry per xDS type the proxy was sent instead of one per resource, and
// no resource contents: the same states, versions and NACK errors
// (genericConfig decides them for both), cheap enough for a page that
// polls with a thousand proxies connected.
func (s *Server) ClientStatus() *statusv3.ClientStatusResponse {
	conns := s.pusher.connections()
	resp := &statusv3.ClientStatusResponse{Config: make([]*statusv3.ClientConfig, 0, len(conns))}
	for _, c := range conns {
		st := c.status()
		cc := &statusv3.ClientConfig{Node: annotatedNode(st)}
		for i, typeURL := range xdsTypes {
			if st.types[i].Responses > 0 {
				cc.GenericXdsConfigs = append(cc.GenericXdsConfigs, genericConfig(typeURL, &st.types[i]))
			}
		}
		resp.Config = append(resp.Config, cc)
	}
	return resp
}

// Connections lists the open connections (what /debug/connections shows).
func (s *Server) Connections() []Connection {
	out := []Connection{}
	for _, st := range s.statuses() {
		c := Connection{Conn: st.id, ID: st.proxy.ID, Kind: st.kind, Delta: st.delta, ConnectedAt: st.connectedAt,
			Namespace: st.proxy.Namespace, ServiceAccount: st.proxy.Metadata.ServiceAccount}
		if st.caller != nil {
			c.Identity = st.caller.Namespace + "/" + st.caller.ServiceAccount
		}
		out = append(out, c)
	}
	return out
}

// ErrNotConnected is returned for a proxy ID no open connection has.
var ErrNotConnected = errors.New("proxy is not connected (see /debug/connections)")

// ConfigDump returns the xDS resources of the connection with ID id or,
// failing that, of the newest connection of the node with ID id (what
// /debug/config_dump?proxyID= shows).
func (s *Server) ConfigDump(id string) (ConfigDump, error) {
	st, ok := s.find(id)
	if !ok {
		return ConfigDump{}, ErrNotConnected
	}
	out := ConfigDump{Conn: st.id, ID: st.proxy.ID, Kind: st.kind, Versions: map[string]string{}, Resources: map[string][]json.RawMessage{}}
	if st.buildErr != nil {
		out.Error = st.buildErr.Error()
	}
	if st.snap == nil {
		return out, nil
	}
	for i, t := range xdsTypes {
		out.Versions[shortTypes[i]] = st.snap.version(t)
		list, err := resourcesJSON(st.snap, t)
		if err != nil {
			return ConfigDump{}, err
		}
		out.Resources[shortTypes[i]] = list
	}
	return out, nil
}

// Problems returns the input the registry could not use, then the policy
// the current snapshot builder could not enforce as written.
func (s *Server) Problems() []registry.Problem {
	ps := append(s.cfg.Registry.Problems(), s.pusher.builderProblems()...)
	if ps == nil {
		ps = []registry.Problem{}
	}
	return ps
}

// Push is what the last rebuild round did.
type Push struct {
	At       time.Time     `json:"at"`
	Took     time.Duration `json:"took"`
	Revision uint64        `json:"revision"`
	Rebuilt  int           `json:"rebuilt"` // proxies whose snapshot was rebuilt
	Changed  int           `json:"changed"` // of them, proxies whose resources changed
}

// Stats is the server's state for an overview.
type Stats struct {
	StartedAt   time.Time   `json:"startedAt"`
	Pushes      int64       `json:"pushes"`
	LastPush    Push        `json:"lastPush"`
	Convergence Convergence `json:"convergence"`
}

// Stats returns the server's start time, pushes and recent convergence
// (p50/p99 over the last minutes, and per minute).
func (s *Server) Stats() Stats {
	st := Stats{StartedAt: s.startedAt, Pushes: s.pushes.Load(), Convergence: s.recent.summary(time.Minute)}
	if p := s.lastPush.Load(); p != nil {
		st.LastPush = *p
	}
	return st
}

// observeConvergence records a change-to-ACK time for /metrics and Stats.
func (s *Server) observeConvergence(seconds float64) {
	s.metrics.convergence.Observe(seconds)
	s.recent.add(seconds)
}

// SetStatusPage serves h at / on the HTTP port, to loopback clients only
// unless DebugOpen (as /debug/). Call it before Start.
func (s *Server) SetStatusPage(h http.Handler) { s.page = h }

// pushRecord holds the last Push.
type pushRecord = atomic.Pointer[Push]
