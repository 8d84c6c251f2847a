package registry

import (
	"maps"
	"reflect"
	"slices"

	memdb "github.com/hashicorp/go-memdb"
)

// Change says what one revision of the model changed.
type Change struct {
	Revision      uint64
	Hostnames     []string // services whose config or endpoints changed
	EndpointsOnly bool     // only endpoints of Hostnames changed (no ports/addresses/policy)
	Workloads     []string // addresses of workloads (pods/VMs) that changed
	Policy        bool     // a PeerAuthentication or DestinationRule changed
	All           bool     // anything may have changed
}

func (c *Change) empty() bool {
	return len(c.Hostnames) == 0 && len(c.Workloads) == 0 && !c.Policy && !c.All
}

// ChangesSince returns what changed after revision rev, oldest first. When
// the log no longer reaches back to rev it returns one Change{All: true}.
func (s *Store) ChangesSince(rev uint64) []Change {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rev >= s.revision {
		return nil
	}
	if rev < s.dropped {
		return []Change{{Revision: s.revision, All: true}}
	}
	i, _ := slices.BinarySearchFunc(s.changes, rev+1, func(c Change, r uint64) int {
		switch {
		case c.Revision < r:
			return -1
		case c.Revision > r:
			return 1
		}
		return 0
	})
	return slices.Clone(s.changes[i:])
}

// commitLocked commits a write, builds the new view and, when the merged
// model differs, bumps the revision, logs the change and signals subscribers.
func (s *Store) commitLocked(txn *memdb.Txn) {
	txn.Commit()
	old := s.view.Load()
	next := buildView(s.db.Txn(false), s.revision, s.trustDomain)
	ch := diffViews(old, next)
	if ch.empty() {
		s.view.Store(next)
		return
	}
	s.revision++
	next.revision, ch.Revision = s.revision, s.revision
	s.view.Store(next)
	s.changes = append(s.changes, ch)
	if over := len(s.changes) - s.changeLimit; over > 0 {
		s.dropped = s.changes[over-1].Revision
		s.changes = slices.Delete(s.changes, 0, over)
	}
	s.logger.Debug("registry: model changed", "version", ch.Revision, "hostnames", len(ch.Hostnames),
		"endpointsOnly", ch.EndpointsOnly, "workloads", len(ch.Workloads), "policy", ch.Policy)
	s.notify()
}

// diffViews compares two merged models.
func diffViews(old, next *view) Change {
	ch := Change{EndpointsOnly: true}
	for _, h := range unionKeys(old.byHost, next.byHost) {
		switch {
		case !reflect.DeepEqual(old.byHost[h], next.byHost[h]):
			ch.Hostnames = append(ch.Hostnames, h)
			ch.EndpointsOnly = false
		case !reflect.DeepEqual(old.endpoints[h], next.endpoints[h]):
			ch.Hostnames = append(ch.Hostnames, h)
		}
	}
	for _, a := range unionKeys(old.byIP, next.byIP) {
		if !reflect.DeepEqual(old.byIP[a], next.byIP[a]) {
			ch.Workloads = append(ch.Workloads, a)
		}
	}
	ch.Policy = !reflect.DeepEqual(old.peerAuths, next.peerAuths) || !reflect.DeepEqual(old.destRules, next.destRules)
	if ch.Policy || len(ch.Hostnames) == 0 {
		ch.EndpointsOnly = false
	}
	return ch
}

func unionKeys[V any](a, b map[string]V) []string {
	keys := slices.Collect(maps.Keys(a))
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}
