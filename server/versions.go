package server

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
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
	name    string
	version string
	sum     uint64 // version as a number, for type versions
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
		name:    cache.GetResourceName(r),
		version: hex.EncodeToString(sum[:8]),
		sum:     binary.BigEndian.Uint64(sum[:8]),
		any:     &anypb.Any{TypeUrl: "type.googleapis.com/" + string(proto.MessageName(r)), Value: b},
	}
	h.cur[r] = v
	return v, nil
}

// typeResources is one type of a proxy snapshot. It is shared between
// proxies and never modified. Making one costs a cached hash lookup per
// resource (a sidecar's lists are its own, merged with its inbound part);
// the maps by name are made on first use (delta streams, named
// subscriptions, CSDS).
type typeResources struct {
	version string
	list    []types.Resource // sorted by name
	names   []string         // by list index
	vers    []string         // content hash, by list index
	anys    []*anypb.Any     // marshaled resources, by list index

	indexOnce sync.Once
	index     map[string]int // name -> list index
	mapsOnce  sync.Once
	resources map[string]types.Resource // delta: read on every push to every delta watch
	versions  map[string]string         // resource name -> content hash (delta)
	itemsOnce sync.Once
	items     map[string]types.ResourceWithTTL // CSDS and debug views

	hostsOnce sync.Once
	hosts     map[string]bool // see serviceHosts
}

// versionOf returns the content hash of a named resource.
func (tr *typeResources) versionOf(name string) (string, bool) {
	tr.indexOnce.Do(func() {
		tr.index = make(map[string]int, len(tr.names))
		for i, n := range tr.names {
			tr.index[n] = i
		}
	})
	i, ok := tr.index[name]
	if !ok {
		return "", false
	}
	return tr.vers[i], true
}

// maps returns the resources and their versions by name, made once and
// shared by every delta watch given tr (callers must not modify them).
func (tr *typeResources) maps() (map[string]types.Resource, map[string]string) {
	tr.mapsOnce.Do(func() {
		tr.resources = make(map[string]types.Resource, len(tr.names))
		tr.versions = make(map[string]string, len(tr.names))
		for i, n := range tr.names {
			tr.resources[n] = tr.list[i]
			tr.versions[n] = tr.vers[i]
		}
	})
	return tr.resources, tr.versions
}

// itemsByName returns the resources by name with no TTL, made once.
func (tr *typeResources) itemsByName() map[string]types.ResourceWithTTL {
	tr.itemsOnce.Do(func() {
		tr.items = make(map[string]types.ResourceWithTTL, len(tr.names))
		for i, n := range tr.names {
			tr.items[n] = types.ResourceWithTTL{Resource: tr.list[i]}
		}
	})
	return tr.items
}

// serviceHosts returns the service hosts named by the resources' names
// (`outbound|PORT|SUBSET|HOST`, `inbound|PORT|NAME|HOST`), computed once
// per shared list.
func (tr *typeResources) serviceHosts() map[string]bool {
	tr.hostsOnce.Do(func() {
		tr.hosts = make(map[string]bool, len(tr.names))
		for _, name := range tr.names {
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
		list:  list,
		names: make([]string, len(list)),
		vers:  make([]string, len(list)),
		anys:  make([]*anypb.Any, len(list)),
	}
	var sum uint64 = 14695981039346656037 // FNV offset basis
	sorted := true
	for i, r := range list {
		v, err := h.hash(r)
		if err != nil {
			return nil, err
		}
		tr.names[i], tr.vers[i], tr.anys[i] = v.name, v.version, v.any
		if i > 0 && v.name <= tr.names[i-1] {
			sorted = false
		}
		// Lists are sorted by name, so the sum is stable.
		sum = (sum ^ v.sum) * 1099511628211
	}
	if !sorted {
		if err := checkDuplicates(tr.names); err != nil {
			return nil, err
		}
	}
	tr.version = strconv.FormatUint(sum, 16)
	return tr, nil
}

// checkDuplicates reports a name listed twice.
func checkDuplicates(names []string) error {
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if seen[n] {
			return fmt.Errorf("resource %q listed twice", n)
		}
		seen[n] = true
	}
	return nil
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
		return tr.itemsByName()
	}
	return nil
}

// GetResources returns the resources of a type by name. The map is shared
// (go-control-plane's delta cache reads it for every watch on every push)
// and must not be modified.
func (s *nodeSnapshot) GetResources(typeURL string) map[string]types.Resource {
	if tr := s.types[typeURL]; tr != nil {
		resources, _ := tr.maps()
		return resources
	}
	return nil
}

// ConstructVersionMap is a no-op: versions are computed on creation.
func (s *nodeSnapshot) ConstructVersionMap() error { return nil }

// GetVersionMap returns the content hash of each resource of a type.
func (s *nodeSnapshot) GetVersionMap(typeURL string) map[string]string {
	if tr := s.types[typeURL]; tr != nil {
		_, versions := tr.maps()
		return versions
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
