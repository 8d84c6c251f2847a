package server

import (
	"hash/maphash"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"weak"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/librarymesh/controlplane/meshname"
)

// subscription is what a stream asks for of one type: every resource
// (wildcard) and/or the named ones.
type subscription struct {
	set      *nameSet // explicit names; nil for none
	wildcard bool
	// namespaces: a name of the set also covers every resource named
	// NAME/REST, as Envoy's VHDS subscribes to a route configuration's
	// virtual hosts by the route configuration's name.
	namespaces bool
}

// has reports whether the subscription covers a resource.
func (s subscription) has(name string) bool {
	if s.wildcard || s.set.has(name) {
		return true
	}
	if !s.namespaces {
		return false
	}
	ns, ok := meshname.VHDSRouteConfig(name)
	return ok && s.set.has(ns)
}

// same reports whether two subscriptions are the same. Name sets are
// interned, so equal sets are the same pointer.
func (s subscription) same(o subscription) bool {
	return s.wildcard == o.wildcard && s.set == o.set && s.namespaces == o.namespaces
}

// nameSet is an immutable set of resource names. Sets are interned: the
// thousand sidecars that subscribe to the same thousand clusters' endpoints
// share one set instead of holding a thousand copies.
type nameSet struct {
	list  []string         // the names, in the order they were first asked for
	names map[string]int32 // name -> its place in list
	key   setKey
	// derived remembers the sets update made from this one, by the
	// change (see changeKey), so the thousand streams that subscribe to
	// one new name each find the set the first made without comparing it
	// name by name. Guarded by the interner's mu.
	derived map[string]weak.Pointer[nameSet]

	encodeOnce sync.Once
	encoded    []byte // see wire
	hashOnce   sync.Once
	hash       uint64 // see namesHash
}

// maxDerived bounds a set's derived entries; past it they start over.
const maxDerived = 16

// newNameSet makes the set of list, whose names are distinct.
func newNameSet(list []string, key setKey) *nameSet {
	s := &nameSet{list: list, names: make(map[string]int32, len(list)), key: key}
	for i, n := range list {
		s.names[n] = int32(i)
	}
	return s
}

// has reports whether the set holds name (a nil set holds nothing).
func (s *nameSet) has(name string) bool {
	if s == nil {
		return false
	}
	_, ok := s.names[name]
	return ok
}

func (s *nameSet) len() int {
	if s == nil {
		return 0
	}
	return len(s.names)
}

// wire returns the set's names encoded as repeated field 3, in the set's
// order: the resource_names of a SotW request (and the subscribed names of
// a delta one) naming exactly the set, as clients encode them. It is made
// on first use and shared by every stream of the set.
func (s *nameSet) wire() []byte {
	s.encodeOnce.Do(func() {
		n := 0
		for _, name := range s.list {
			n += 1 + protowire.SizeBytes(len(name))
		}
		b := make([]byte, 0, n)
		for _, name := range s.list {
			b = protowire.AppendTag(b, resourceNamesField, protowire.BytesType)
			b = protowire.AppendString(b, name)
		}
		s.encoded = b
	})
	return s.encoded
}

// appendNames appends the set's names to dst.
func (s *nameSet) appendNames(dst []string) []string {
	return append(dst, s.list...)
}

// marks records which of a set's names a list named, to tell whether the
// list names exactly the set (repeats allowed).
type marks struct {
	set      *nameSet
	seen     []uint64
	distinct int
	next     int // the place the next name takes if the list keeps the set's order
}

func (s *nameSet) marks() *marks {
	return &marks{set: s, seen: make([]uint64, (len(s.names)+63)/64)}
}

// mark records a name of the list: false if the set lacks it.
func (m *marks) mark(i int32, ok bool) bool {
	if !ok {
		return false
	}
	if bit := uint64(1) << (i % 64); m.seen[i/64]&bit == 0 {
		m.seen[i/64] |= bit
		m.distinct++
	}
	return true
}

// markBytes is mark for a name in a request's bytes (no string is made).
// A client repeats its names in the same order, so the name is first
// compared with the one the set has next, and looked up only when it
// differs.
func (m *marks) markBytes(name []byte) bool {
	if m.next < len(m.set.list) && string(name) == m.set.list[m.next] {
		m.next++
		return m.mark(int32(m.next-1), true)
	}
	i, ok := m.set.names[string(name)]
	m.next = int(i) + 1
	return m.mark(i, ok)
}

func (m *marks) markString(name string) bool {
	i, ok := m.set.names[name]
	return m.mark(i, ok)
}

// all reports whether every name of the set was marked.
func (m *marks) all() bool { return m.distinct == len(m.set.names) }

// setKey identifies a set of names: the sum of their hashes under a
// per-process random seed, and their count. A set found by its key is
// still checked name by name before it is used (see interner).
type setKey struct {
	sum uint64
	n   int
}

// interner hands out shared nameSets. It holds them weakly: a set no
// stream uses any more is collected, and its entry removed, so sets of old
// subscriptions (before a service was added) do not pile up. Sets are
// found by key, and a set found is confirmed name by name before it is
// trusted: a key is only a guess.
type interner struct {
	seed maphash.Seed

	mu   sync.Mutex
	sets map[setKey]weak.Pointer[nameSet]
}

func newInterner() *interner {
	return &interner{seed: maphash.MakeSeed(), sets: map[setKey]weak.Pointer[nameSet]{}}
}

// liveLocked returns the set keyed k if it is still in use.
func (in *interner) liveLocked(k setKey) *nameSet {
	if p, ok := in.sets[k]; ok {
		return p.Value()
	}
	return nil
}

// forget drops the entry of a collected set.
func (in *interner) forget(k setKey) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if p, ok := in.sets[k]; ok && p.Value() == nil {
		delete(in.sets, k)
	}
}

func (in *interner) hash(name string) uint64 { return maphash.String(in.seed, name) }

// of returns the set of names (which must not hold "*"), or nil for none.
func (in *interner) of(names []string) *nameSet {
	if len(names) == 0 {
		return nil
	}
	k := setKey{n: len(names)}
	for _, n := range names {
		k.sum += in.hash(n)
	}
	same := func(s *nameSet) bool {
		m := s.marks()
		for _, n := range names {
			if !m.markString(n) {
				return false
			}
		}
		return m.all()
	}
	return in.get(k, same, func() []string { return distinct(names) })
}

// distinct returns names without repeats, in order.
func distinct(names []string) []string {
	seen := make(map[string]bool, len(names))
	out := make([]string, 0, len(names))
	for _, n := range names {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

// lookup returns the interned set with key k, or nil. The caller confirms
// that it holds the names it wants.
func (in *interner) lookup(k setKey) *nameSet {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.liveLocked(k)
}

// update returns set with adds added and removes taken out ("*" must be
// in neither); a name in both ends up out. The result's key is worked out
// from set's before any map is made, so a stream subscribing to what others
// already share makes none.
func (in *interner) update(set *nameSet, adds, removes []string) *nameSet {
	if len(adds) == 0 && len(removes) == 0 {
		return set
	}
	change, memo := changeKey(adds, removes)
	memo = memo && set != nil
	if memo {
		if s := in.derivedOf(set, change); s != nil {
			return s
		}
	}
	next := in.apply(set, adds, removes)
	if memo && next != nil {
		in.mu.Lock()
		if set.derived == nil || len(set.derived) >= maxDerived {
			set.derived = map[string]weak.Pointer[nameSet]{}
		}
		set.derived[change] = weak.Make(next)
		in.mu.Unlock()
	}
	return next
}

// changeKey names a subscription change of a few names, one to one, or
// reports false for a longer one (not worth remembering).
func changeKey(adds, removes []string) (string, bool) {
	if len(adds)+len(removes) > 4 {
		return "", false
	}
	var b []byte
	for _, l := range [2][]string{adds, removes} {
		for _, n := range l {
			b = strconv.AppendInt(b, int64(len(n)), 10)
			b = append(b, ':')
			b = append(b, n...)
		}
		b = append(b, '|')
	}
	return string(b), true
}

// derivedOf returns the live set update made from set by change, or nil.
func (in *interner) derivedOf(set *nameSet, change string) *nameSet {
	in.mu.Lock()
	defer in.mu.Unlock()
	if p, ok := set.derived[change]; ok {
		return p.Value()
	}
	return nil
}

// apply is update without the memo.
func (in *interner) apply(set *nameSet, adds, removes []string) *nameSet {
	var k setKey
	if set != nil {
		k = set.key
	}
	for _, n := range adds {
		if !set.has(n) {
			k.sum += in.hash(n)
			k.n++
		}
	}
	for _, n := range removes {
		if set.has(n) {
			k.sum -= in.hash(n)
			k.n--
		}
	}
	removed := nameLookup(removes)
	each := func(fn func(string) bool) bool {
		var cur []string
		if set != nil {
			cur = set.list
		}
		for _, n := range cur {
			if !removed(n) && !fn(n) {
				return false
			}
		}
		for _, n := range adds {
			if !removed(n) && !fn(n) {
				return false
			}
		}
		return true
	}
	same := func(s *nameSet) bool {
		m := s.marks()
		return each(m.markString) && m.all()
	}
	return in.get(k, same, func() []string {
		next := make([]string, 0, set.len()+len(adds))
		each(func(n string) bool { next = append(next, n); return true })
		return distinct(next)
	})
}

// nameLookup returns a membership test for a list of names: a scan for a
// short list, a map for a long one.
func nameLookup(list []string) func(string) bool {
	if len(list) <= 8 {
		return func(n string) bool { return slices.Contains(list, n) }
	}
	m := make(map[string]bool, len(list))
	for _, n := range list {
		m[n] = true
	}
	return func(n string) bool { return m[n] }
}

// get returns the set keyed k if same confirms it, else makes the set and
// returns the live set holding exactly those names, or the new one. It
// returns nil for no names.
func (in *interner) get(k setKey, same func(*nameSet) bool, make func() []string) *nameSet {
	in.mu.Lock()
	defer in.mu.Unlock()
	if s := in.liveLocked(k); s != nil && same(s) {
		return s
	}
	names := make() // distinct
	if len(names) == 0 {
		return nil
	}
	key := setKey{n: len(names)}
	for _, n := range names {
		key.sum += in.hash(n)
	}
	if s := in.liveLocked(key); s != nil && s.holdsExactly(names) {
		return s
	}
	s := newNameSet(names, key)
	in.sets[key] = weak.Make(s)
	runtime.AddCleanup(s, in.forget, key)
	return s
}

// holdsExactly reports whether the set is names (distinct).
func (s *nameSet) holdsExactly(names []string) bool {
	if len(names) != len(s.names) {
		return false
	}
	for _, n := range names {
		if _, ok := s.names[n]; !ok {
			return false
		}
	}
	return true
}

// diffCache computes, once per pair of shared lists, which names changed
// between them: every proxy moving from one to the other needs the same
// answer. It keeps the pairs of the last two pushes (rotate), so it holds
// no old lists beyond that.
type diffCache struct {
	mu    sync.Mutex
	pairs *generations[[2]*typeResources, *listDiff]
	added *generations[[2]*nameSet, []string] // see addedNames
}

// listDiff is what changed from one list to another: names new or with
// other content, and names gone.
type listDiff struct{ changed, removed []string }

func newDiffCache() *diffCache {
	return &diffCache{pairs: newGenerations[[2]*typeResources, *listDiff](), added: newGenerations[[2]*nameSet, []string]()}
}

// rotate starts a new generation; call it once per push.
func (c *diffCache) rotate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pairs.rotate()
	c.added.rotate()
}

// maxAddedPairs bounds the pairs of sets addedNames keeps per generation:
// the sets come from requests, and a client that names other resources in
// every request must not grow the cache until the next push. Past it the
// cache starts a new generation early; a pair dropped is only worked out
// again.
const maxAddedPairs = 256

// addedNames returns the names of set to that from lacks, once per pair of
// sets: the thousand SotW sidecars that add a new service's endpoints to
// their subscription all move from one interned set to the same other.
func (c *diffCache) addedNames(from, to *nameSet) []string {
	k := [2]*nameSet{from, to}
	c.mu.Lock()
	defer c.mu.Unlock()
	added, ok := c.added.get(k)
	if !ok {
		for _, n := range to.list {
			if !from.has(n) {
				added = append(added, n)
			}
		}
		if len(c.added.cur) >= maxAddedPairs {
			c.added.rotate()
		}
		c.added.put(k, added)
	}
	return added
}

// lists returns the diff of two shared lists.
func (c *diffCache) lists(from, to *typeResources) *listDiff {
	k := [2]*typeResources{from, to}
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.pairs.get(k)
	if !ok {
		d = diffLists(from, to)
		c.pairs.put(k, d)
	}
	return d
}

func diffLists(from, to *typeResources) *listDiff {
	d := &listDiff{}
	if from == to {
		return d
	}
	for i, n := range to.names {
		if j, ok := from.lookup(n); !ok || from.vers[j] != to.vers[i] {
			d.changed = append(d.changed, n)
		}
	}
	for _, n := range from.names {
		if _, ok := to.lookup(n); !ok {
			d.removed = append(d.removed, n)
		}
	}
	return d
}

// snapshots returns the names changed and removed from one typeSnapshot to
// another. The shared parts' diff is cached; a proxy's own parts are short
// and compared directly.
func (c *diffCache) snapshots(from, to *typeSnapshot) (changed, removed []string) {
	if from == to {
		return nil, nil
	}
	var sd, od *listDiff
	if from.shared != to.shared {
		sd = c.lists(from.shared, to.shared)
	}
	if from.own != to.own {
		od = diffLists(from.own, to.own)
	}
	switch {
	case sd == nil && od == nil:
		return nil, nil // two typeSnapshots of the same lists (one made after the other left the cache)
	case od == nil:
		return sd.changed, sd.removed
	case sd == nil:
		return od.changed, od.removed
	}
	changed = append(append([]string(nil), sd.changed...), od.changed...)
	for _, n := range append(append([]string(nil), sd.removed...), od.removed...) {
		if _, _, moved := to.find(n); !moved {
			removed = append(removed, n)
		}
	}
	return changed, removed
}
