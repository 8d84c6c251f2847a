package server

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/librarymesh/controlplane/registry"
)

// syncEntry is one proxy in /debug/syncz.
type syncEntry struct {
	ID    string                `json:"proxy"`
	Kind  string                `json:"kind"`
	Types map[string]TypeStatus `json:"types"` // by short type: cds, eds, ...
}

func sortedProxies(ps []ProxyStatus) []ProxyStatus {
	slices.SortFunc(ps, func(a, b ProxyStatus) int { return strings.Compare(a.ID, b.ID) })
	return ps
}

// syncz shows, per proxy and type, the version sent, ACKed and NACKed.
func (s *Server) syncz(w http.ResponseWriter, _ *http.Request) {
	out := []syncEntry{}
	for _, p := range sortedProxies(s.tracker.list()) {
		e := syncEntry{ID: p.ID, Kind: p.Kind, Types: map[string]TypeStatus{}}
		for t, ts := range p.Types {
			e.Types[shortType(t)] = *ts
		}
		out = append(out, e)
	}
	writeJSON(w, out)
}

// connection is one proxy in /debug/connections.
type connection struct {
	ID          string    `json:"proxy"`
	Kind        string    `json:"kind"`
	Streams     int       `json:"streams"`
	Delta       bool      `json:"delta"`
	ConnectedAt time.Time `json:"connectedAt"`
}

// connections lists the connected proxies.
func (s *Server) connections(w http.ResponseWriter, _ *http.Request) {
	out := []connection{}
	for _, p := range sortedProxies(s.tracker.list()) {
		out = append(out, connection{ID: p.ID, Kind: p.Kind, Streams: p.Streams, Delta: p.Delta, ConnectedAt: p.ConnectedAt})
	}
	writeJSON(w, out)
}

// configDump is the xDS a proxy gets.
type configDump struct {
	ID        string                       `json:"proxy"`
	Kind      string                       `json:"kind"`
	Error     string                       `json:"buildError,omitempty"`
	Versions  map[string]string            `json:"versions"`
	Resources map[string][]json.RawMessage `json:"resources"`
}

// configDump shows the resources of ?proxyID= as JSON.
func (s *Server) configDump(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("proxyID")
	snap, kind, buildErr, ok := s.pusher.proxySnapshot(id)
	if !ok {
		http.Error(w, "proxy "+id+" is not connected (see /debug/connections)", http.StatusNotFound)
		return
	}
	out := configDump{ID: id, Kind: kind, Versions: map[string]string{}, Resources: map[string][]json.RawMessage{}}
	if buildErr != nil {
		out.Error = buildErr.Error()
	}
	if snap != nil {
		for _, t := range xdsTypes {
			out.Versions[shortType(t)] = snap.GetVersion(t)
			list, err := resourcesJSON(snap, t)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			out.Resources[shortType(t)] = list
		}
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
	Revision            uint64                          `json:"revision"`
	Services            []*registry.Service             `json:"services"`
	Endpoints           map[string][]*registry.Endpoint `json:"endpoints"`
	PeerAuthentications []*registry.PeerAuthentication  `json:"peerAuthentications"`
	DestinationRules    []*registry.DestinationRule     `json:"destinationRules"`
}

// registryz shows the current model.
func (s *Server) registryz(w http.ResponseWriter, _ *http.Request) {
	v := s.cfg.Registry.View()
	out := registryDump{
		Revision: v.Revision(), Services: v.Services(), Endpoints: map[string][]*registry.Endpoint{},
		PeerAuthentications: v.PeerAuthentications(), DestinationRules: v.DestinationRules(),
	}
	for _, svc := range out.Services {
		out.Endpoints[svc.Hostname] = v.Endpoints(svc.Hostname)
	}
	writeJSON(w, out)
}

// problems lists the input the registry could not use.
func (s *Server) problems(w http.ResponseWriter, _ *http.Request) {
	ps := s.cfg.Registry.Problems()
	if ps == nil {
		ps = []registry.Problem{}
	}
	writeJSON(w, ps)
}
