package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/librarymesh/controlplane/meshname"
	"github.com/librarymesh/controlplane/snapshot"
)

// hasher versions resources by content. Protos shared between proxies are
// hashed once: the hash is cached per proto pointer. A list shared between
// proxies (the same backing array) is indexed and versioned once, and its
// typeResources shared; so is the typeSnapshot of a (shared, own) pair.
// Entries not used for two generations are dropped, so the caches hold
// about one model revision.
//
// Equal content is also shared when it comes as different protos, as each
// proxy's own part does (the inbound config of a service's replicas is the
// same): a shared resource's encoding, and a list's typeResources, are
// looked up by content, so replicas hold one copy instead of one each.
//
// A proxy's own resources are hashed but their encodings are not kept (see
// ownList): the protos are kept anyway (the snapshot Builder carries them
// over between builds), and they are encoded again on the rare sends.
type hasher struct {
	hashes *generations[types.Resource, hashed]
	lists  *generations[listKey, *typeResources]
	pairs  *generations[[2]*typeResources, *typeSnapshot]

	encodings *generations[uint64, hashed]             // by sum
	contents  *generations[contentKey, *typeResources] // by sum and length

	gen uint64 // counts rotations (see keep)
}

// contentKey identifies a list by content: its sum and length, and
// whether it is an own list (encodings not kept). A list found by it is
// still compared name by name and version by version.
type contentKey struct {
	sum uint64
	n   int
	own bool
}

// emptyType is every empty list.
var emptyType, _ = newTypeResources(nil, nil, false)

// listKey identifies a resource list by its backing array.
type listKey struct {
	first *types.Resource
	n     int
}

// keyOf returns a list's listKey; every empty list has the zero one.
func keyOf(list []types.Resource) listKey {
	if len(list) == 0 {
		return listKey{}
	}
	return listKey{&list[0], len(list)}
}

func newHasher() *hasher {
	return &hasher{
		hashes: newGenerations[types.Resource, hashed](),
		lists:  newGenerations[listKey, *typeResources](),
		pairs:  newGenerations[[2]*typeResources, *typeSnapshot](),

		encodings: newGenerations[uint64, hashed](),
		contents:  newGenerations[contentKey, *typeResources](),
		gen:       1,
	}
}

// rotate starts a new generation. Call it once per model revision.
func (h *hasher) rotate() {
	h.hashes.rotate()
	h.lists.rotate()
	h.pairs.rotate()
	h.encodings.rotate()
	h.contents.rotate()
	h.gen++
}

// keep keeps a shared list's entries for this generation, as a lookup of
// the list would, for a proxy that keeps its typeSnapshot without one (see
// newNodeSnapshot). A proxy connecting later with the same list finds it
// versioned and marshaled, not again (and its encodings twice in memory).
// A proxy's own list is left to go: a few resources, versioned again if
// needed.
func (h *hasher) keep(list []types.Resource, tr *typeResources) {
	if len(list) == 0 || tr.gen == h.gen {
		return
	}
	tr.gen = h.gen
	h.lists.get(keyOf(list))
	h.contents.get(contentKey{tr.sum, len(tr.names), false})
}

// list returns the typeResources of a list, shared by every proxy given
// the same list.
func (h *hasher) list(list []types.Resource) (*typeResources, error) {
	return h.typeResources(list, false)
}

// ownList is list for a list of one proxy's own resources (or of a few
// replicas'). Their encodings are not kept past the first response that
// sends them (see ownAnys): sent when the proxy connects or they change
// (and, over SotW, with every response of their type), they cost less to
// encode again than to keep for as long as the proxy is connected, about
// 2.5 KB a proxy.
func (h *hasher) ownList(list []types.Resource) (*typeResources, error) {
	return h.typeResources(list, true)
}

func (h *hasher) typeResources(list []types.Resource, own bool) (*typeResources, error) {
	if len(list) == 0 {
		return emptyType, nil
	}
	k := keyOf(list)
	if tr, ok := h.lists.get(k); ok {
		return tr, nil
	}
	tr, err := newTypeResources(h, list, own)
	if err != nil {
		return nil, err
	}
	ck := contentKey{tr.sum, len(tr.names), own}
	if same, ok := h.contents.get(ck); ok && slices.Equal(same.names, tr.names) && slices.Equal(same.vers, tr.vers) {
		tr = same
	} else {
		h.contents.put(ck, tr)
	}
	h.lists.put(k, tr)
	return tr, nil
}

// pair returns the typeSnapshot of a shared and an own list, shared by
// every proxy given the same two.
func (h *hasher) pair(shared, own *typeResources) (*typeSnapshot, error) {
	k := [2]*typeResources{shared, own}
	if ts, ok := h.pairs.get(k); ok {
		return ts, nil
	}
	ts, err := newTypeSnapshot(shared, own)
	if err != nil {
		return nil, err
	}
	h.pairs.put(k, ts)
	return ts, nil
}

// hashed is a resource marshaled once: its content hash and its bytes,
// ready to send (for an own resource, kept only until sent: see ownList).
type hashed struct {
	name    string
	version string
	sum     uint64 // version as a number, for type versions
	any     *anypb.Any
}

// encode is how every resource is encoded, for its hash and to be sent.
var encode = proto.MarshalOptions{Deterministic: true}

// hash marshals r, a proto that is never modified, once per generation.
func (h *hasher) hash(r types.Resource) (hashed, error) {
	if v, ok := h.hashes.get(r); ok {
		return v, nil
	}
	v, b, err := marshalHashed(r)
	if err != nil {
		return hashed{}, err
	}
	typeURL := anyTypeURL(r)
	if same, ok := h.encodings.get(v.sum); ok && same.any.GetTypeUrl() == typeURL && bytes.Equal(same.any.GetValue(), b) {
		h.hashes.put(r, same)
		return same, nil
	}
	v.any = &anypb.Any{TypeUrl: typeURL, Value: b}
	h.hashes.put(r, v)
	h.encodings.put(v.sum, v)
	return v, nil
}

// hashOwn is hash for an own resource: nothing of it is kept, its
// encoding is returned in v.any.
func hashOwn(r types.Resource) (hashed, error) {
	v, b, err := marshalHashed(r)
	if err == nil {
		v.any = &anypb.Any{TypeUrl: anyTypeURL(r), Value: b}
	}
	return v, err
}

// marshalHashed marshals r and versions it by its bytes (any is unset).
func marshalHashed(r types.Resource) (hashed, []byte, error) {
	b, err := encode.Marshal(r)
	if err != nil {
		return hashed{}, nil, fmt.Errorf("marshal %s: %w", cache.GetResourceName(r), err)
	}
	sum := sha256.Sum256(b)
	return hashed{name: cache.GetResourceName(r), version: hex.EncodeToString(sum[:8]), sum: binary.BigEndian.Uint64(sum[:8])}, b, nil
}

// anyTypeURL is the type URL of r in an Any: one of xdsTypes' strings for
// the types served (each of a snapshot's Anys carries it: made for each,
// at S they held 0.3 MB), made afresh for any other.
func anyTypeURL(r types.Resource) string {
	name := string(proto.MessageName(r))
	for _, t := range xdsTypes {
		if len(t) == len(typeURLPrefix)+len(name) && t[len(typeURLPrefix):] == name {
			return t
		}
	}
	return typeURLPrefix + name
}

// typeURLPrefix is what a type URL adds to a message's full name.
const typeURLPrefix = "type.googleapis.com/"

// typeResources is one list of resources of a type, versioned and
// marshaled. It is shared between proxies and never modified; what is made
// from it on first use is in its made.
type typeResources struct {
	gen   uint64 // the hasher's generation that last kept it (see keep); the pusher's, under its mu
	sum   uint64
	list  []types.Resource // as built (sorted by name)
	names []string         // by list index
	vers  []string         // content hash, by list index
	anys  []*anypb.Any     // marshaled resources, by list index; nil for an own list (see anyAt)
	// first is an own list's encodings as hashed, for its first response
	// (see ownAnys), until that is made or a flush finds none due (see
	// firstDone): its first send follows its making, and encoding it again
	// then was a second encoding of every proxy's own resources as a fleet
	// connected.
	first atomic.Pointer[[]*anypb.Any]

	made atomic.Pointer[madeFrom] // see madeFrom
}

// madeFrom is what a typeResources makes on first use. Apart, it costs a
// list nothing until then: a proxy's own lists (one or two per sidecar,
// kept while it is connected) never need most of it.
type madeFrom struct {
	indexOnce sync.Once
	index     map[string]int // name -> list index

	// A shared list's resources one at a time, each encoded as the
	// resources field of a response (SotW, delta) when first sent without
	// the rest of the list, then shared by every proxy it goes to: an
	// endpoint change sends one ClusterLoadAssignment to every sidecar.
	sotwFields, deltaFields fieldCache

	hostsOnce sync.Once
	hosts     map[string]bool // see serviceHosts

	sotwEncOnce, deltaEncOnce sync.Once
	sotwEnc, deltaEnc         []byte // every resource, encoded as response fields
}

// madeFrom returns tr's madeFrom, made on first use.
func (tr *typeResources) madeFrom() *madeFrom {
	if m := tr.made.Load(); m != nil {
		return m
	}
	tr.made.CompareAndSwap(nil, new(madeFrom))
	return tr.made.Load()
}

// sotwEncoded returns every resource as the resources field of a SotW
// response, encoded once: for a shared list, sent to many proxies.
func (tr *typeResources) sotwEncoded() []byte {
	m := tr.madeFrom()
	m.sotwEncOnce.Do(func() { m.sotwEnc = tr.sotwEncoding() })
	return m.sotwEnc
}

// deltaEncoded is sotwEncoded for delta responses.
func (tr *typeResources) deltaEncoded() []byte {
	m := tr.madeFrom()
	m.deltaEncOnce.Do(func() { m.deltaEnc = tr.deltaEncoding() })
	return m.deltaEnc
}

// sotwEncoding encodes every resource as the resources field of a SotW
// response, without keeping it: a proxy's own list is sent whole to that
// proxy once, and a copy kept with the list for as long as the proxy holds
// it would be per-proxy memory for nothing.
func (tr *typeResources) sotwEncoding() []byte {
	anys := tr.anys
	if anys == nil {
		anys = tr.ownAnys(nil)
	}
	b, _ := proto.Marshal(&discoveryv3.DiscoveryResponse{Resources: anys})
	return b
}

// anyAt returns list index i, marshaled: kept for a shared list, encoded
// again for an own list (the same bytes its version was hashed from).
func (tr *typeResources) anyAt(i int) *anypb.Any {
	if tr.anys != nil {
		return tr.anys[i]
	}
	r := tr.list[i]
	// It was marshaled once already, when hashed; protos are never changed.
	b, _ := encode.Marshal(r)
	return &anypb.Any{TypeUrl: anyTypeURL(r), Value: b}
}

// ownAnys encodes list indexes idx (nil: all) of an own list again, on a
// goroutine of its own. Encoding a listener recurses about 20 messages deep
// and grows the stack it runs on to 8 KB; the flush it is part of may then
// wait for the proxy to read, holding that stack (a fleet connecting at
// once: hundreds of flushes waiting). On its own goroutine, the flush keeps
// 4 KB.
//
// While the list keeps the encodings made when it was hashed, until its
// first response is made or a flush finds none due (see firstDone), it
// uses those and encodes nothing: a response made and dropped before it
// is sent (an inline push over its budget, sent by serve instead) leaves
// them to the one sent.
func (tr *typeResources) ownAnys(idx []int) []*anypb.Any {
	if first := tr.first.Load(); first != nil {
		if idx == nil {
			return *first
		}
		anys := make([]*anypb.Any, len(idx))
		for j, i := range idx {
			anys[j] = (*first)[i]
		}
		return anys
	}
	if idx == nil {
		idx = make([]int, len(tr.list))
		for i := range idx {
			idx[i] = i
		}
	}
	anys := make([]*anypb.Any, len(idx))
	onOwnStack(make(chan error, 1), func() error {
		for j, i := range idx {
			anys[j] = tr.anyAt(i)
		}
		return nil
	})
	return anys
}

// deltaEncoding is sotwEncoding for delta responses.
func (tr *typeResources) deltaEncoding() []byte {
	b, _ := proto.Marshal(&discoveryv3.DeltaDiscoveryResponse{Resources: tr.deltaResources()})
	return b
}

// deltaResources makes the delta Resource of every list index.
func (tr *typeResources) deltaResources() []*discoveryv3.Resource {
	anys := tr.anys
	if anys == nil {
		anys = tr.ownAnys(nil)
	}
	res := make([]*discoveryv3.Resource, len(tr.names))
	for i := range res {
		res[i] = &discoveryv3.Resource{Name: tr.names[i], Version: tr.vers[i], Resource: anys[i]}
	}
	return res
}

func newTypeResources(h *hasher, list []types.Resource, own bool) (*typeResources, error) {
	tr := &typeResources{
		list:  list,
		names: make([]string, len(list)),
		vers:  make([]string, len(list)),
	}
	anys := make([]*anypb.Any, len(list))
	if !own {
		tr.anys = anys
	}
	sum := fnvOffset
	sorted := true
	for i, r := range list {
		var v hashed
		var err error
		if own {
			v, err = hashOwn(r)
		} else {
			v, err = h.hash(r)
		}
		if err != nil {
			return nil, err
		}
		tr.names[i], tr.vers[i], anys[i] = v.name, v.version, v.any
		if i > 0 && v.name <= tr.names[i-1] {
			sorted = false
		}
		// Lists are sorted by name, so the sum is stable.
		sum = (sum ^ v.sum) * fnvPrime
	}
	if !sorted {
		if err := checkDuplicates(tr.names); err != nil {
			return nil, err
		}
	}
	tr.sum = sum
	if own {
		tr.first.Store(&anys)
	}
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

// lookup returns the list index of a named resource. A short list (a
// proxy's own, most often) is searched name by name, without an index.
func (tr *typeResources) lookup(name string) (int, bool) {
	if len(tr.names) <= shortList {
		for i, n := range tr.names {
			if n == name {
				return i, true
			}
		}
		return 0, false
	}
	m := tr.madeFrom()
	m.indexOnce.Do(func() {
		m.index = make(map[string]int, len(tr.names))
		for i, n := range tr.names {
			m.index[n] = i
		}
	})
	i, ok := m.index[name]
	return i, ok
}

// shortList is the longest list lookup searches without an index.
const shortList = 8

// ownDeltaResources returns the delta Resources of list indexes idx of an
// own list, made afresh (see ownList).
func (tr *typeResources) ownDeltaResources(idx []int) []*discoveryv3.Resource {
	anys := tr.ownAnys(idx)
	res := make([]*discoveryv3.Resource, len(idx))
	for j, i := range idx {
		res[j] = &discoveryv3.Resource{Name: tr.names[i], Version: tr.vers[i], Resource: anys[j]}
	}
	return res
}

// resourcesField is the number of the resources field, in DiscoveryResponse
// and DeltaDiscoveryResponse alike.
const resourcesField protowire.Number = 2

// sotwField returns index i of a shared list as the resources field of a
// SotW response, encoded once.
func (tr *typeResources) sotwField(i int) []byte {
	return tr.madeFrom().sotwFields.get(len(tr.list), i, func() proto.Message { return tr.anys[i] })
}

// deltaField is sotwField for delta responses.
func (tr *typeResources) deltaField(i int) []byte {
	return tr.madeFrom().deltaFields.get(len(tr.list), i, func() proto.Message {
		return &discoveryv3.Resource{Name: tr.names[i], Version: tr.vers[i], Resource: tr.anys[i]}
	})
}

// fieldCache holds a list's resources encoded one at a time as a
// response's resources field, by list index, each made when first asked.
type fieldCache struct {
	once sync.Once
	enc  []atomic.Pointer[[]byte]
}

// get returns index i of a list of n, encoding msg() as a resources field
// first if no stream has yet. Two streams may encode it at once; both get
// the same bytes, and one encoding is kept.
func (c *fieldCache) get(n, i int, msg func() proto.Message) []byte {
	c.once.Do(func() { c.enc = make([]atomic.Pointer[[]byte], n) })
	f := &c.enc[i]
	if b := f.Load(); b != nil {
		return *b
	}
	v, _ := proto.Marshal(msg()) // the Any holds bytes encoded already
	b := protowire.AppendBytes(protowire.AppendTag(make([]byte, 0, len(v)+8), resourcesField, protowire.BytesType), v)
	f.CompareAndSwap(nil, &b)
	return *f.Load()
}

// serviceHosts returns the service hosts named by the resources' names
// (service cluster names, see meshname.ClusterHost), computed once per
// shared list.
func (tr *typeResources) serviceHosts() map[string]bool {
	m := tr.madeFrom()
	m.hostsOnce.Do(func() {
		m.hosts = make(map[string]bool, len(tr.names))
		for _, name := range tr.names {
			if host, ok := meshname.ClusterHost(name); ok {
				m.hosts[host] = true
			}
		}
	})
	return m.hosts
}

// typeSnapshot is one type of a proxy's snapshot: the part it shares with
// other proxies (outbound config) and its own part (inbound config, often
// empty). The two hold different names. A proxy's typeSnapshot costs a few
// words, however long the shared list is.
type typeSnapshot struct {
	version     string
	shared, own *typeResources
}

// firstDone drops the encodings the own list's first response sends (see
// ownAnys), once the response is made (before it waits for the proxy to
// read it: a fleet connecting has hundreds waiting), or a flush has looked
// at the type and found none due (a proxy that reconnects holding the
// current version is sent nothing): they would stay with the list for as
// long as the proxy holds it. It only reads when they are gone already:
// every flush calls it for each type, and many proxies may share an own
// list (an empty one, say), so a store each time would have them write to
// one word at once on every push.
func (ts *typeSnapshot) firstDone() {
	if ts != nil && ts.own != nil && ts.own.first.Load() != nil {
		ts.own.first.Store(nil)
	}
}

func newTypeSnapshot(shared, own *typeResources) (*typeSnapshot, error) {
	ts := &typeSnapshot{shared: shared, own: own}
	if len(own.names) == 0 {
		ts.version = strconv.FormatUint(shared.sum, 16)
		return ts, nil
	}
	for _, n := range own.names {
		if _, dup := shared.lookup(n); dup {
			return nil, fmt.Errorf("resource %q listed twice", n)
		}
	}
	ts.version = strconv.FormatUint((shared.sum^own.sum)*fnvPrime+uint64(len(own.names)), 16)
	return ts, nil
}

// parts returns the two lists.
func (ts *typeSnapshot) parts() [2]*typeResources { return [2]*typeResources{ts.shared, ts.own} }

// len is the number of resources.
func (ts *typeSnapshot) len() int { return len(ts.shared.names) + len(ts.own.names) }

// find returns the list and index holding a named resource.
func (ts *typeSnapshot) find(name string) (*typeResources, int, bool) {
	for _, tr := range ts.parts() {
		if i, ok := tr.lookup(name); ok {
			return tr, i, true
		}
	}
	return nil, 0, false
}

// versionOf returns the content hash of a named resource.
func (ts *typeSnapshot) versionOf(name string) (string, bool) {
	tr, i, ok := ts.find(name)
	if !ok {
		return "", false
	}
	return tr.vers[i], true
}

// hasHost reports whether a resource names the service host (see
// typeResources.serviceHosts).
func (ts *typeSnapshot) hasHost(host string) bool {
	return ts.shared.serviceHosts()[host] || ts.own.serviceHosts()[host]
}

// resources returns the resources by name (debug views and CSDS; made on
// every call), private keys redacted: they never leave through a debug view.
func (ts *typeSnapshot) resources() map[string]types.Resource {
	out := make(map[string]types.Resource, ts.len())
	for _, tr := range ts.parts() {
		for i, n := range tr.names {
			out[n] = tr.list[i]
			if s, ok := tr.list[i].(*tlsv3.Secret); ok {
				out[n] = snapshot.RedactSecret(s)
			}
		}
	}
	return out
}

// nodeSnapshot is a proxy's snapshot: each type versioned by content.
type nodeSnapshot struct {
	types [numTypes]*typeSnapshot // by typeIndex
}

// newNodeSnapshot versions a proxy's shared and own resources with h (own
// may be nil). prev is the proxy's last build (none: the zero built). A
// list that is the very list prev was made from (the same backing array, so
// the same protos) keeps prev's versioning without a lookup, and a type
// whose two lists both are keeps prev's typeSnapshot: after an endpoint
// change that is every type but EDS, for each of a thousand proxies, and
// after a new service every proxy's own lists.
func newNodeSnapshot(h *hasher, shared, own *snapshot.Resources, prev built) (*nodeSnapshot, error) {
	sl, ol := typeLists(shared), typeLists(own)
	var pl [2][numTypes][]types.Resource
	if prev.snap != nil {
		pl = [2][numTypes][]types.Resource{typeLists(prev.parts[0]), typeLists(prev.parts[1])}
	}
	s := &nodeSnapshot{}
	for i, typeURL := range xdsTypes {
		var was *typeSnapshot
		if prev.snap != nil {
			was = prev.snap.types[i]
		}
		sameShared := was != nil && sameList(sl[i], pl[0][i])
		sameOwn := was != nil && sameList(ol[i], pl[1][i])
		if sameShared {
			h.keep(sl[i], was.shared)
		}
		if sameShared && sameOwn {
			s.types[i] = was
			continue
		}
		var str, otr *typeResources
		var err error
		if sameShared {
			str = was.shared
		} else {
			str, err = h.list(sl[i])
		}
		if err == nil {
			if sameOwn {
				otr = was.own
			} else {
				otr, err = h.ownList(ol[i])
			}
		}
		if err == nil {
			s.types[i], err = h.pair(str, otr)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", shortType(typeURL), err)
		}
	}
	return s, nil
}

// built is what a proxy's snapshot was last made from: its parts (own may
// be nil) and the snapshot they gave.
type built struct {
	parts [2]*snapshot.Resources
	snap  *nodeSnapshot
}

// typeLists returns a part's lists by typeIndex (nil for none).
func typeLists(r *snapshot.Resources) [numTypes][]types.Resource {
	if r == nil {
		return [numTypes][]types.Resource{}
	}
	return [numTypes][]types.Resource{r.Clusters, r.Endpoints, r.Listeners, r.Routes, r.Secrets, r.VirtualHosts}
}

// sameList reports whether two lists are one: the same backing array and
// length (two empty lists are one too).
func sameList(a, b []types.Resource) bool { return keyOf(a) == keyOf(b) }

// get returns a type, or nil for a type not served.
func (s *nodeSnapshot) get(typeURL string) *typeSnapshot {
	if i := typeIndex(typeURL); i >= 0 {
		return s.types[i]
	}
	return nil
}

// version returns the content version of a type.
func (s *nodeSnapshot) version(typeURL string) string {
	if ts := s.get(typeURL); ts != nil {
		return ts.version
	}
	return ""
}

// resources returns the resources of a type by name.
func (s *nodeSnapshot) resources(typeURL string) map[string]types.Resource {
	if ts := s.get(typeURL); ts != nil {
		return ts.resources()
	}
	return nil
}
