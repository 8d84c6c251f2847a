package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/librarymesh/controlplane/registry"
)

// syncEntry is one connection in /debug/syncz.
type syncEntry struct {
	Conn  string                `json:"connection"`
	ID    string                `json:"proxy"` // node ID
	Kind  string                `json:"kind"`
	Types map[string]TypeStatus `json:"types"` // by short type: cds, eds, ...
}

// statuses copies the state of every connection, ordered by ID.
func (s *Server) statuses() []connStatus {
	conns := s.pusher.connections()
	out := make([]connStatus, len(conns))
	for i, c := range conns {
		out[i] = c.status()
	}
	return out
}

// syncz shows, per connection and type, the version sent, ACKed and NACKed.
func (s *Server) syncz(w http.ResponseWriter, _ *http.Request) {
	out := []syncEntry{}
	for _, st := range s.statuses() {
		e := syncEntry{Conn: st.id, ID: st.proxy.ID, Kind: st.kind, Types: map[string]TypeStatus{}}
		for i, ts := range st.types {
			if ts.Responses > 0 {
				e.Types[shortTypes[i]] = ts
			}
		}
		out = append(out, e)
	}
	writeJSON(w, out)
}

// Connection is one stream in /debug/connections.
type Connection struct {
	Conn           string    `json:"connection"`
	ID             string    `json:"proxy"` // node ID
	Kind           string    `json:"kind"`
	Delta          bool      `json:"delta"`
	ConnectedAt    time.Time `json:"connectedAt"`
	Namespace      string    `json:"namespace"`
	ServiceAccount string    `json:"serviceAccount,omitempty"` // as the node's metadata claims it
	Identity       string    `json:"identity,omitempty"`       // proven on the TLS port: NAMESPACE/SERVICE_ACCOUNT
}

// connections lists the open connections.
func (s *Server) connections(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, s.Connections())
}

// ConfigDump is the xDS a connection gets.
type ConfigDump struct {
	Conn      string                       `json:"connection"`
	ID        string                       `json:"proxy"`
	Kind      string                       `json:"kind"`
	Error     string                       `json:"buildError,omitempty"`
	Versions  map[string]string            `json:"versions"`
	Resources map[string][]json.RawMessage `json:"resources"`
}

// find returns the connection with ID id or, failing that, the newest
// connection of the node with ID id.
func (s *Server) find(id string) (connStatus, bool) {
	var found connStatus
	ok := false
	for _, st := range s.statuses() {
		if st.id == id {
			return st, true
		}
		if st.proxy.ID == id && (!ok || st.connectedAt.After(found.connectedAt)) {
			found, ok = st, true
		}
	}
	return found, ok
}

// configDump shows the resources of ?proxyID= (a connection ID or a node
// ID) as JSON.
func (s *Server) configDump(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("proxyID")
	out, err := s.ConfigDump(id)
	if errors.Is(err, ErrNotConnected) {
		http.Error(w, "proxy "+id+" is not connected (see /debug/connections)", http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, out)
}

func resourcesJSON(snap *nodeSnapshot, typeURL string) ([]json.RawMessage, error) {
	items := snap.resources(typeURL)
	names := make([]string, 0, len(items))
	for n := range items {
		names = append(names, n)
	}
	slices.Sort(names)
	out := make([]json.RawMessage, 0, len(names))
	for _, n := range names {
		b, err := protojson.Marshal(items[n])
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// registryDump is the model as /debug/registryz shows it.
type registryDump struct {
	Revision              uint64                          `json:"revision"`
	Services              []*registry.Service             `json:"services"`
	Endpoints             map[string][]*registry.Endpoint `json:"endpoints"`
	PeerAuthentications   []*registry.PeerAuthentication  `json:"peerAuthentications"`
	DestinationRules      []*registry.DestinationRule     `json:"destinationRules"`
	AuthorizationPolicies []*registry.AuthorizationPolicy `json:"authorizationPolicies"`
	Sidecars              []*registry.Sidecar             `json:"sidecars"`
	VirtualServices       []*registry.VirtualService      `json:"virtualServices"`
	WorkloadGroups        []*registry.WorkloadGroup       `json:"workloadGroups"`
}

// registryz shows the current model.
func (s *Server) registryz(w http.ResponseWriter, _ *http.Request) {
	v := s.cfg.Registry.View()
	out := registryDump{
		Revision: v.Revision(), Services: v.Services(), Endpoints: map[string][]*registry.Endpoint{},
		PeerAuthentications: v.PeerAuthentications(), DestinationRules: v.DestinationRules(),
		Sidecars:              v.Sidecars(),
		AuthorizationPolicies: v.AuthorizationPolicies(),
		VirtualServices:       v.VirtualServices(),
		WorkloadGroups:        v.WorkloadGroups(),
	}
	for _, svc := range out.Services {
		out.Endpoints[svc.Hostname] = v.Endpoints(svc.Hostname)
	}
	writeJSON(w, out)
}

// problems lists the input the registry could not use, then the policy the
// current snapshot builder could not enforce as written for the proxies it
// built (e.g. an HTTP-only AuthorizationPolicy field on a TCP port).
func (s *Server) problems(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, s.Problems())
}
