package server

import (
	"hash/fnv"
	"strconv"
)

// A proxy that reconnects (to a restarted server, or to another replica
// serving the same config) says what it holds: a delta stream names each
// resource's version in initial_resource_versions (see pickInitial), a
// SotW stream gives the version of each type it last ACKed. Versions are
// content hashes, the same on every replica, so a SotW type whose version
// is the current one is not sent again.
//
// A SotW version names what the proxy holds only together with what it
// subscribed to: a proxy may have added a name whose response never
// reached it, still holding the same type version. So the version sent for
// a subscription by name carries a hash of the names too; a proxy that
// presents it holds exactly the current content of those names.

// wireVersion is the version_info of a SotW response of ts for the
// stream's current subscription.
func (t *typeState) wireVersion(ts *typeSnapshot) string {
	if t.sub.wildcard || t.sub.set == nil {
		return ts.version
	}
	return ts.version + "." + strconv.FormatUint(t.sub.set.namesHash(), 16)
}

// namesHash hashes the set's names, whatever their order. It is made on
// first use and shared by every stream of the set.
func (s *nameSet) namesHash() uint64 {
	s.hashOnce.Do(func() { s.hash = namesHash(s.list) })
	return s.hash
}

// namesHash hashes a set of distinct names, whatever their order.
func namesHash(names []string) uint64 {
	var sum uint64
	for _, n := range names {
		h := fnv.New64a()
		h.Write([]byte(n))
		sum += h.Sum64()
	}
	return sum
}

// resume takes a SotW stream's first response of a type: when the version
// the proxy presented is the one it would be sent, the proxy holds it all
// and nothing is sent. It reports whether it was.
func (s *xdsStream) resume(t *typeState, ts *typeSnapshot) bool {
	presented := t.presented
	t.presented = ""
	if presented == "" || t.held != nil || t.nacked != nil || presented != t.wireVersion(ts) {
		return false
	}
	t.synced(ts)
	s.c.resumed(int(t.index), ts.version)
	return true
}

// resumed records that the proxy holds version of type i from an earlier
// stream, as if it was sent and ACKed on this one.
func (c *conn) resumed(i int, version string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ts := &c.types[i]
	ts.sent, ts.acked = version, version
	c.sentMask |= 1 << i
}
