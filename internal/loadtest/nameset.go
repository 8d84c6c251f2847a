package loadtest

import (
	"hash/maphash"
	"math/bits"
	"runtime"
	"slices"
	"sync"
	"weak"
)

// nameSet is one distinct set of resource names that SotW proxies want,
// shared by every proxy that wants exactly these names: at 10,000 services
// a copy per proxy (a map, the sorted list and its encoding) made the
// client, not the server, the bottleneck. A set is read-only once made.
// The nil *nameSet is the empty set.
type nameSet struct {
	index map[string]int32 // name -> its position in list
	list  []string         // sorted
	wire  []byte           // encodeNames(list), what every ACK of the type repeats
}

func newNameSet(sorted []string) *nameSet {
	s := &nameSet{index: make(map[string]int32, len(sorted)), list: slices.Clone(sorted), wire: encodeNames(sorted)}
	for i, n := range s.list {
		s.index[n] = int32(i)
	}
	return s
}

// names returns the names, sorted; the caller must not modify them.
func (s *nameSet) names() []string {
	if s == nil {
		return nil
	}
	return s.list
}

// position returns where name is in the sorted names, if there.
func (s *nameSet) position(name string) (int, bool) {
	if s == nil {
		return 0, false
	}
	i, ok := s.index[name]
	return int(i), ok
}

// encoded returns the names encoded as DiscoveryRequest.resource_names.
func (s *nameSet) encoded() []byte {
	if s == nil {
		return nil
	}
	return s.wire
}

// nameSets interns name sets by content. It holds them weakly: a set no
// proxy wants any more (the subscription before a new service) is
// collected and its entry removed.
type nameSets struct {
	seed    maphash.Seed
	scratch sync.Pool // *[]string, for collecting a response's names

	mu sync.Mutex
	// m maps a hash of the names to the live sets with that hash (more
	// than one only on a collision). A slice in m is never modified in
	// place, so a reader may use one it got under mu after unlocking.
	m map[uint64][]weak.Pointer[nameSet]
}

func newNameSets() *nameSets {
	return &nameSets{seed: maphash.MakeSeed(), m: map[uint64][]weak.Pointer[nameSet]{},
		scratch: sync.Pool{New: func() any { return new([]string) }}}
}

// getScratch returns an empty slice to collect names in; putScratch hands
// it back. Pooled: a CDS response at 10,000 services names 10,000 EDS
// resources, for every proxy.
func (c *nameSets) getScratch() *[]string { return c.scratch.Get().(*[]string) }

func (c *nameSets) putScratch(b *[]string) {
	clear(*b) // not to keep names alive
	*b = (*b)[:0]
	c.scratch.Put(b)
}

// intern returns the set of names (nil for none). It sorts names in place
// and drops duplicates; the caller keeps names, which the set does not
// refer to.
func (c *nameSets) intern(names []string) *nameSet {
	slices.Sort(names)
	names = slices.Compact(names)
	if len(names) == 0 {
		return nil
	}
	return c.internSorted(c.hash(names), names)
}

func (c *nameSets) hash(sorted []string) uint64 {
	var h maphash.Hash
	h.SetSeed(c.seed)
	for _, n := range sorted {
		h.WriteString(n)
		h.WriteByte(0)
	}
	return h.Sum64()
}

// internSorted returns the set of sorted, distinct names whose hash is h,
// making it if there is none. A set is taken only if its names are equal
// to these, so a collision costs a comparison, never a wrong set.
func (c *nameSets) internSorted(h uint64, sorted []string) *nameSet {
	c.mu.Lock()
	cands := c.m[h]
	c.mu.Unlock()
	// Compared unlocked: every proxy of a fleet interns the same 10,000
	// names after a CDS push, and they need not wait for one another.
	if s := find(cands, sorted); s != nil {
		return s
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Look again, locked: the proxies that missed together must get one
	// set, not a set each.
	if s := find(c.m[h], sorted); s != nil {
		return s
	}
	s := newNameSet(sorted)
	c.m[h] = append(slices.Clip(c.m[h]), weak.Make(s))
	runtime.AddCleanup(s, c.forget, h)
	return s
}

func find(cands []weak.Pointer[nameSet], sorted []string) *nameSet {
	for _, w := range cands {
		if s := w.Value(); s != nil && slices.Equal(s.list, sorted) {
			return s
		}
	}
	return nil
}

// forget drops the collected sets of hash h.
func (c *nameSets) forget(h uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	live := slices.DeleteFunc(slices.Clone(c.m[h]), func(w weak.Pointer[nameSet]) bool { return w.Value() == nil })
	if len(live) == 0 {
		delete(c.m, h)
		return
	}
	c.m[h] = live
}

// size returns how many hashes have sets (for tests).
func (c *nameSets) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// bitset is a set of small integers.
type bitset []uint64

func newBitset(n int) bitset { return make(bitset, (n+63)/64) }

// add adds i and reports whether it was not there before.
func (b bitset) add(i int) bool {
	w, m := i/64, uint64(1)<<(i%64)
	if b[w]&m != 0 {
		return false
	}
	b[w] |= m
	return true
}

func (b bitset) has(i int) bool { return b[i/64]&(1<<(i%64)) != 0 }

// count returns how many integers are in b (for tests).
func (b bitset) count() int {
	n := 0
	for _, w := range b {
		n += bits.OnesCount64(w)
	}
	return n
}

// subscription is what a SotW proxy wants of one type (EDS or RDS), a set
// shared with the proxies that want the same, and, until the proxy is
// configured, which of those names it has received: a bit per name of the
// set, not a map of names per proxy.
type subscription struct {
	set     *nameSet
	have    bitset // by set.index, while not settled
	missing int    // names of set whose bit is not set
	settled bool   // the proxy is configured: what arrives is not recorded
}

// want makes set the subscription and reports whether that changed it
// (sets are interned: same names, same pointer). The names received that
// set still wants stay received.
func (s *subscription) want(set *nameSet) bool {
	if set == s.set {
		return false
	}
	if !s.settled {
		have := newBitset(len(set.names()))
		missing := len(set.names())
		// Both lists are sorted: one merge walk finds the names in both.
		old, nu := s.set.names(), set.names()
		for i, j := 0, 0; i < len(old) && j < len(nu); {
			switch {
			case old[i] < nu[j]:
				i++
			case old[i] > nu[j]:
				j++
			default:
				if s.have.has(i) {
					have.add(j)
					missing--
				}
				i++
				j++
			}
		}
		s.have, s.missing = have, missing
	}
	s.set = set
	return true
}

// got records that a resource named name arrived.
func (s *subscription) got(name string) {
	if s.settled {
		return
	}
	if i, ok := s.set.position(name); ok && s.have.add(i) {
		s.missing--
	}
}

// complete reports whether every name wanted has arrived.
func (s *subscription) complete() bool { return s.settled || s.missing == 0 }

// settle stops recording what arrives: once its proxy is configured
// nothing reads it.
func (s *subscription) settle() { s.settled, s.have = true, nil }
