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
	Policy        bool     // a PeerAuthentication, DestinationRule, Sidecar, AuthorizationPolicy or VirtualService changed
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

// commitLocked commits a write (a transaction that tracks changes),
// updates the view for what it touched and, when the merged model differs,
// bumps the revision, logs the change and signals subscribers.
func (s *Store) commitLocked(txn *memdb.Txn) {
	changes := txn.Changes()
	txn.Commit()
	read := s.db.Txn(false)
	old := s.view.Load()
	a := affectedBy(read, changes)
	next := updateView(old, read, a, s.trustDomain)
	s.logConflicts(old, next, a)
	ch := diffViews(old, next, a)
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

// diffViews compares two merged models where a write touched them.
func diffViews(old, next *view, a affectedSet) Change {
	ch := Change{EndpointsOnly: true}
	for _, h := range slices.Sorted(maps.Keys(a.hosts)) {
		switch {
		case !reflect.DeepEqual(old.byHost[h], next.byHost[h]):
			ch.Hostnames = append(ch.Hostnames, h)
			ch.EndpointsOnly = false
		case !reflect.DeepEqual(old.endpoints[h], next.endpoints[h]):
			ch.Hostnames = append(ch.Hostnames, h)
		}
	}
	for _, addr := range slices.Sorted(maps.Keys(a.addrs)) {
		if !reflect.DeepEqual(old.byIP[addr], next.byIP[addr]) {
			ch.Workloads = append(ch.Workloads, addr)
		}
	}
	if a.policy {
		ch.Policy = !reflect.DeepEqual(old.peerAuths, next.peerAuths) || !reflect.DeepEqual(old.destRules, next.destRules) ||
			!reflect.DeepEqual(old.sidecars, next.sidecars) || !reflect.DeepEqual(old.authz, next.authz) ||
			!reflect.DeepEqual(old.virtualServices, next.virtualServices) ||
			!reflect.DeepEqual(old.gateways, next.gateways) || !reflect.DeepEqual(old.credentials, next.credentials)
	}
	if ch.Policy || len(ch.Hostnames) == 0 {
		ch.EndpointsOnly = false
	}
	return ch
}

// logConflicts logs the merge problems of the touched hosts and addresses
// that are new.
func (s *Store) logConflicts(old, next *view, a affectedSet) {
	for _, h := range slices.Sorted(maps.Keys(a.hosts)) {
		if ps := next.conflicts[h]; len(ps) > 0 && !reflect.DeepEqual(old.conflicts[h], ps) {
			s.logProblems(ps)
		}
	}
	for _, addr := range slices.Sorted(maps.Keys(a.addrs)) {
		if ps := next.addrConflicts[addr]; len(ps) > 0 && !reflect.DeepEqual(old.addrConflicts[addr], ps) {
			s.logProblems(ps)
		}
	}
	if a.policy && !reflect.DeepEqual(old.sidecars.problems, next.sidecars.problems) {
		s.logProblems(next.sidecars.problems)
	}
}
