package server

import (
	"net/http"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// trustTypes carry the validation contexts that name the trust bundle
// (snapshot.Options.TrustBundle).
var trustTypes = []string{resourcev3.ClusterType, resourcev3.ListenerType}

// SetTrustBundle makes id (the CA's BundleID) the trust bundle the generated
// clusters and filter chains name, and rebuilds every connection, so each
// proxy is sent, and ACKs, configuration made for it.
func (s *Server) SetTrustBundle(id string) { s.pusher.setTrustBundle(id) }

func (p *pusher) setTrustBundle(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.opts.TrustBundle == id {
		return
	}
	p.opts.TrustBundle = id
	p.builder = p.newB(p.view, p.opts)
	p.hashes.rotate()
	p.checked.rotate()
	p.diffs.rotate()
	now := time.Now()
	for _, c := range p.connections() {
		p.buildLocked(c, now)
	}
}

// TrustBundleAcks reports how many of the connected proxies have ACKed, for
// clusters and listeners, the versions made for trust bundle id; pending
// names the others.
func (s *Server) TrustBundleAcks(id string) (acked, total int, pending []string) {
	for _, st := range s.statuses() {
		total++
		if st.trustBundle == id && st.ackedTrust() {
			acked++
		} else {
			pending = append(pending, st.id)
		}
	}
	return acked, total, pending
}

// ackedTrust reports whether every trust type sent to the connection was
// ACKed at the version of its current snapshot.
func (st connStatus) ackedTrust() bool {
	if st.snap == nil {
		return false
	}
	for _, typeURL := range trustTypes {
		ts := st.types[typeIndex(typeURL)]
		if ts.Sent != "" && ts.Acked != st.snap.version(typeURL) {
			return false
		}
	}
	return true
}

// trustBundleReport is /debug/trustbundle.
type trustBundleReport struct {
	Bundle  string   `json:"bundle"`
	Acked   int      `json:"acked"`
	Total   int      `json:"total"`
	Pending []string `json:"pending"`
}

func (s *Server) trustBundlez(w http.ResponseWriter, _ *http.Request) {
	s.pusher.mu.Lock()
	id := s.pusher.opts.TrustBundle
	s.pusher.mu.Unlock()
	r := trustBundleReport{Bundle: id, Pending: []string{}}
	var pending []string
	r.Acked, r.Total, pending = s.TrustBundleAcks(id)
	r.Pending = append(r.Pending, pending...)
	writeJSON(w, r)
}

// HandleDebug serves h at pattern (under /debug/) with the other debug
// views, for loopback clients unless DebugOpen. Call it before Start.
func (s *Server) HandleDebug(pattern string, h http.Handler) {
	s.extraDebug = append(s.extraDebug, debugRoute{pattern, h})
}

type debugRoute struct {
	pattern string
	h       http.Handler
}
