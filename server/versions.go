package server

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/librarymesh/controlplane/snapshot"
)

// xdsTypes are the types a proxy snapshot holds, in the order Envoy wants them.
var xdsTypes = []string{
	resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType,
	resourcev3.RouteType, resourcev3.SecretType,
}

// shortType names a type URL for logs, metrics and debug views.
func shortType(typeURL string) string {
	switch typeURL {
	case resourcev3.ClusterType:
		return "cds"
	case resourcev3.EndpointType:
		return "eds"
	case resourcev3.ListenerType:
		return "lds"
	case resourcev3.RouteType:
		return "rds"
	case resourcev3.SecretType:
		return "sds"
	}
	return typeURL
}

// hasher versions resources by content. Protos shared between proxies are
// hashed once: the hash is cached per proto pointer. A list shared between
// proxies (the same backing array) is indexed and versioned once, and its
// typeResources shared. Entries not used for two generations are dropped,
// so the caches hold about one model revision.
type hasher struct {
	cur, prev         map[types.Resource]hashed
	curList, prevList map[listKey]*typeResources
}

// emptyType is every empty list.
var emptyType, _ = newTypeResources(nil, nil)

// listKey identifies a resource list by its backing array.
type listKey struct {
	first *types.Resource
	n     int
}

func newHasher() *hasher {
	h := &hasher{}
	h.rotate()
	h.rotate()
	return h
}

// rotate starts a new generation. Call it once per model revision.
func (h *hasher) rotate() {
	h.prev, h.cur = h.cur, make(map[types.Resource]hashed, len(h.cur))
	h.prevList, h.curList = h.curList, make(map[listKey]*typeResources, len(h.curList))
}

// list returns the typeResources of a list, shared by every proxy given
// the same list.
func (h *hasher) list(list []types.Resource) (*typeResources, error) {
	if len(list) == 0 {
		return emptyType, nil
	}
	k := listKey{&list[0], len(list)}
	if tr, ok := h.curList[k]; ok {
		return tr, nil
	}
	if tr, ok := h.prevList[k]; ok {
		h.curList[k] = tr
		return tr, nil
	}
	tr, err := newTypeResources(h, list)
	if err != nil {
		return nil, err
	}
	h.curList[k] = tr
	return tr, nil
}

// hashed is a resource marshaled once: its content hash and its bytes,
// ready to send.
type hashed struct {
	version string
	any     *anypb.Any
}

// hash marshals r, a proto that is never modified, once per generation.
func (h *hasher) hash(r types.Resource) (hashed, error) {
	if v, ok := h.cur[r]; ok {
		return v, nil
	}
	if v, ok := h.prev[r]; ok {
		h.cur[r] = v
		return v, nil
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	if err != nil {
		return hashed{}, fmt.Errorf("marshal %s: %w", cache.GetResourceName(r), err)
	}
	sum := sha256.Sum256(b)
	v := hashed{
		version: hex.EncodeToString(sum[:8]),
		any:     &anypb.Any{TypeUrl: "type.googleapis.com/" + string(proto.MessageName(r)), Value: b},
	}
	h.cur[r] = v
	return v, nil
}

// typeResources is one type of a proxy snapshot. It is shared between
// proxies and never modified.
type typeResources struct {
	version  string
	items    map[string]types.ResourceWithTTL
	versions map[string]string // resource name -> content hash (delta)
	names    []string          // sorted
	anys     []*anypb.Any      // marshaled resources, by names' index

	hostsOnce sync.Once
	hosts     map[string]bool // see serviceHosts
}

// serviceHosts returns the service hosts named by the resources' names
// (`outbound|PORT|SUBSET|HOST`, `inbound|PORT|NAME|HOST`), computed once
// per shared list.
func (tr *typeResources) serviceHosts() map[string]bool {
	tr.hostsOnce.Do(func() {
		tr.hosts = make(map[string]bool, len(tr.items))
		for name := range tr.items {
			if i := strings.LastIndexByte(name, '|'); i >= 0 {
				tr.hosts[name[i+1:]] = true
			}
		}
	})
	return tr.hosts
}

// nodeSnapshot is a proxy's snapshot, versioned per type by content. It
// implements go-control-plane's ResourceSnapshot with the hashes already
// computed, so delta streams need no hashing per proxy.
type nodeSnapshot struct {
	types map[string]*typeResources
}

var _ cache.ResourceSnapshot = (*nodeSnapshot)(nil)

// newNodeSnapshot versions res with h.
func newNodeSnapshot(h *hasher, res *snapshot.Resources) (*nodeSnapshot, error) {
	lists := map[string][]types.Resource{
		resourcev3.ListenerType: res.Listeners, resourcev3.RouteType: res.Routes,
		resourcev3.ClusterType: res.Clusters, resourcev3.EndpointType: res.Endpoints,
		resourcev3.SecretType: res.Secrets,
	}
	s := &nodeSnapshot{types: make(map[string]*typeResources, len(lists))}
	for typeURL, list := range lists {
		tr, err := h.list(list)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", shortType(typeURL), err)
		}
		s.types[typeURL] = tr
	}
	return s, nil
}

func newTypeResources(h *hasher, list []types.Resource) (*typeResources, error) {
	tr := &typeResources{
		items:    make(map[string]types.ResourceWithTTL, len(list)),
		versions: make(map[string]string, len(list)),
		names:    make([]string, 0, len(list)),
		anys:     make([]*anypb.Any, 0, len(list)),
	}
	sum := sha256.New()
	for _, r := range list {
		name := cache.GetResourceName(r)
		if _, dup := tr.items[name]; dup {
			return nil, fmt.Errorf("resource %q listed twice", name)
		}
		v, err := h.hash(r)
		if err != nil {
			return nil, err
		}
		tr.items[name] = types.ResourceWithTTL{Resource: r}
		tr.versions[name] = v.version
		tr.names = append(tr.names, name)
		tr.anys = append(tr.anys, v.any)
		// Lists are sorted by name, so the sum is stable.
		fmt.Fprintf(sum, "%s\x00%s\x00", name, v.version)
	}
	tr.version = hex.EncodeToString(sum.Sum(nil)[:8])
	return tr, nil
}

// GetVersion returns the content version of a type.
func (s *nodeSnapshot) GetVersion(typeURL string) string {
	if tr := s.types[typeURL]; tr != nil {
		return tr.version
	}
	return ""
}

// GetResourcesAndTTL returns the resources of a type by name.
func (s *nodeSnapshot) GetResourcesAndTTL(typeURL string) map[string]types.ResourceWithTTL {
	if tr := s.types[typeURL]; tr != nil {
		return tr.items
	}
	return nil
}

// GetResources returns the resources of a type by name.
func (s *nodeSnapshot) GetResources(typeURL string) map[string]types.Resource {
	tr := s.types[typeURL]
	if tr == nil {
		return nil
	}
	out := make(map[string]types.Resource, len(tr.items))
	for k, v := range tr.items {
		out[k] = v.Resource
	}
	return out
}

// ConstructVersionMap is a no-op: versions are computed on creation.
func (s *nodeSnapshot) ConstructVersionMap() error { return nil }

// GetVersionMap returns the content hash of each resource of a type.
func (s *nodeSnapshot) GetVersionMap(typeURL string) map[string]string {
	if tr := s.types[typeURL]; tr != nil {
		return tr.versions
	}
	return nil
}

// versions returns the version of every type.
func (s *nodeSnapshot) versions() map[string]string {
	out := make(map[string]string, len(s.types))
	for t, tr := range s.types {
		out[t] = tr.version
	}
	return out
}
