package server

import (
	"hash/maphash"
	"runtime"
	"sync"
	"weak"
)

// subscription is what a stream asks for of one type: every resource
// (wildcard) and/or the named ones.
type subscription struct {
	wildcard bool
	set      *nameSet // explicit names; nil for none
}

// has reports whether the subscription covers a resource.
func (s subscription) has(name string) bool {
	if s.wildcard {
		return true
	}
	if s.set == nil {
		return false
	}
	_, ok := s.set.names[name]
	return ok
}

// same reports whether two subscriptions are the same. Name sets are
// interned, so equal sets are the same pointer.
func (s subscription) same(o subscription) bool {
	return s.wildcard == o.wildcard && s.set == o.set
}

// nameSet is an immutable set of resource names. Sets are interned: the
// thousand sidecars that subscribe to the same thousand clusters' endpoints
// share one set instead of holding a thousand copies.
type nameSet struct {
	names map[string]struct{}
	key   setKey
}

// setKey identifies a set of names: the sum of their hashes under a
// per-process random seed, and their count. Two different sets share a key
// with a chance of about 2^-64, and no client can aim for it without the
// seed.
type setKey struct {
	sum uint64
	n   int
}

// interner hands out shared nameSets. It holds them weakly: a set no
// stream uses any more is collected, and its entry removed, so sets of old
// subscriptions (before a service was added) do not pile up.
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
	return in.get(k, func() map[string]struct{} {
		m := make(map[string]struct{}, len(names))
		for _, n := range names {
			m[n] = struct{}{}
		}
		return m
	})
}

// lookup returns the interned set with key k, or nil.
func (in *interner) lookup(k setKey) *nameSet {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.liveLocked(k)
}

// update returns set with adds added and removes taken out ("*" must be
// in neither). The result's key is worked out from set's before any map
// is made, so a stream subscribing to what others already share makes none.
func (in *interner) update(set *nameSet, adds, removes []string) *nameSet {
	if len(adds) == 0 && len(removes) == 0 {
		return set
	}
	var k setKey
	var cur map[string]struct{}
	if set != nil {
		k, cur = set.key, set.names
	}
	for _, n := range adds {
		if _, ok := cur[n]; !ok {
			k.sum += in.hash(n)
			k.n++
		}
	}
	for _, n := range removes {
		if _, ok := cur[n]; ok {
			k.sum -= in.hash(n)
			k.n--
		}
	}
	return in.get(k, func() map[string]struct{} {
		next := make(map[string]struct{}, len(cur)+len(adds))
		for n := range cur {
			next[n] = struct{}{}
		}
		for _, n := range adds {
			next[n] = struct{}{}
		}
		for _, n := range removes {
			delete(next, n)
		}
		return next
	})
}

// get returns the set keyed k, making it on a miss. A made set is keyed by
// what it holds: a guessed key that is off (a list naming one twice, a name
// added and removed at once) never names the wrong set. It returns nil for
// no names.
func (in *interner) get(k setKey, make func() map[string]struct{}) *nameSet {
	in.mu.Lock()
	defer in.mu.Unlock()
	if s := in.liveLocked(k); s != nil {
		return s
	}
	names := make()
	if len(names) == 0 {
		return nil
	}
	key := setKey{n: len(names)}
	for n := range names {
		key.sum += in.hash(n)
	}
	if s := in.liveLocked(key); s != nil {
		return s
	}
	s := &nameSet{names: names, key: key}
	in.sets[key] = weak.Make(s)
	runtime.AddCleanup(s, in.forget, key)
	return s
}

// diffCache computes, once per pair of shared lists, which names changed
// between them: every proxy moving from one to the other needs the same
// answer. It keeps the pairs of the last two pushes (rotate), so it holds
// no old lists beyond that.
type diffCache struct {
	mu    sync.Mutex
	pairs *generations[[2]*typeResources, *listDiff]
}

// listDiff is what changed from one list to another: names new or with
// other content, and names gone.
type listDiff struct{ changed, removed []string }

func newDiffCache() *diffCache {
	return &diffCache{pairs: newGenerations[[2]*typeResources, *listDiff]()}
}

// rotate starts a new generation; call it once per push.
func (c *diffCache) rotate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pairs.rotate()
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
