package registry

import (
	"fmt"
	"iter"
	"reflect"
	"strings"

	memdb "github.com/hashicorp/go-memdb"
	"k8s.io/apimachinery/pkg/runtime"
)

// Item is one API object and where it was read (e.g. "dir/mesh.yaml:12").
type Item struct {
	Object runtime.Object
	Source string
	// Locate, when set, returns where a field of the object was read
	// ("dir/mesh.yaml:17"), so a problem points at its line; "" if unknown.
	Locate func(field string) string
	// Context, when set, prefixes the message of each of the item's
	// problems, e.g. "document 2".
	Context string
}

// OriginUpdate replaces what one origin (a file) says.
type OriginUpdate struct {
	Origin string
	Items  []Item
	// Problems found before conversion (e.g. a document that does not
	// parse); they are remembered with the origin.
	Problems []Problem
	// DroppedProblems is how many more problems the source found and left
	// out of Problems; they are counted in the origin's summary problem.
	DroppedProblems int
	// Partial means some documents could not be read: the origin's objects
	// that Items does not mention stay in force instead of being deleted.
	Partial bool
}

// Upsert converts and validates one API object (a pointer to a k8s.io/api
// or istio.io/client-go type) from an origin ("kube", or a file path) and
// writes it in one transaction. If it is invalid, the previous good version
// stays and the problems are returned (and remembered, see Problems).
func (s *Store) Upsert(origin string, obj runtime.Object) []Problem {
	s.mu.Lock()
	defer s.mu.Unlock()
	key, err := keyOf(obj)
	if err != nil {
		return []Problem{{Source: origin, Reason: "InvalidObject", Message: err.Error()}}
	}
	rec, ps := s.conv.convert(key, obj)
	ps = withSource(ps, sourceOf(origin, key, ""))
	s.setProblemsLocked(origin, key, ps)
	if rec == nil {
		return ps
	}
	txn := s.writeTxn()
	if s.putLocked(txn, origin, key, "", rec) {
		s.commitLocked(txn)
	} else {
		txn.Abort()
	}
	return ps
}

// Delete removes one object of an origin. Kind is a store kind such as
// KindServiceEntry (any API version).
func (s *Store) Delete(origin, kind, namespace, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if namespace == "" {
		namespace = "default"
	}
	key := ObjectKey{Kind: kind, Namespace: namespace, Name: name}
	s.setProblemsLocked(origin, key, nil)
	txn := s.writeTxn()
	if s.deleteLocked(txn, objectID(origin, key)) {
		s.commitLocked(txn)
	} else {
		txn.Abort()
	}
}

// ReplaceOrigin atomically replaces every object from origin by objs.
func (s *Store) ReplaceOrigin(origin string, objs []runtime.Object) []Problem {
	items := make([]Item, len(objs))
	for i, o := range objs {
		items[i] = Item{Object: o}
	}
	return s.Apply(OriginUpdate{Origin: origin, Items: items})
}

// Apply atomically replaces what an origin says, in one transaction. An
// invalid object keeps its last good version; objects the origin no longer
// lists are deleted (unless Partial). It returns all the origin's problems.
func (s *Store) Apply(u OriginUpdate) []Problem {
	s.mu.Lock()
	defer s.mu.Unlock()
	txn := s.writeTxn()
	s.finishLocked(txn, s.applyLocked(txn, u))
	return s.originProblemsLocked(u.Origin)
}

// ApplyAll is Apply of each update in turn, in one transaction: the model
// moves from before the first update to after the last at once, with one
// revision and one signal (a folder's load or rescan, rather than one per
// file). It returns, in order, what each Apply would have returned. It
// writes each update as us yields it, so a source may still be reading
// the next ones (us must not call the store); other writers wait.
func (s *Store) ApplyAll(us iter.Seq[OriginUpdate]) [][]Problem {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][]Problem
	txn := s.writeTxn()
	changed := false
	for u := range us {
		changed = s.applyLocked(txn, u) || changed
		out = append(out, s.originProblemsLocked(u.Origin))
	}
	s.finishLocked(txn, changed)
	return out
}

// applyLocked writes one origin's update into txn and replaces the
// origin's problems. It reports whether txn changed.
func (s *Store) applyLocked(txn *memdb.Txn, u OriginUpdate) bool {
	probs := map[ObjectKey][]Problem{}
	if len(u.Problems) > 0 {
		probs[ObjectKey{}] = append([]Problem(nil), u.Problems...)
	}
	keep := map[string]bool{}
	changed := false
	for _, it := range u.Items {
		changed = s.applyItemLocked(txn, u.Origin, it, keep, probs) || changed
	}
	if !u.Partial {
		changed = s.deleteOthersLocked(txn, u.Origin, keep) || changed
	}
	s.replaceProblemsLocked(u.Origin, probs, u.DroppedProblems)
	return changed
}

// finishLocked commits txn if it changed anything, else aborts it.
func (s *Store) finishLocked(txn *memdb.Txn, changed bool) {
	if changed {
		s.commitLocked(txn)
	} else {
		txn.Abort()
	}
}

func (s *Store) applyItemLocked(txn *memdb.Txn, origin string, it Item, keep map[string]bool, probs map[ObjectKey][]Problem) bool {
	key, err := keyOf(it.Object)
	if err != nil {
		src := it.Source
		if src == "" {
			src = origin
		}
		probs[ObjectKey{}] = append(probs[ObjectKey{}], Problem{Source: src, Reason: "InvalidObject", Message: err.Error()})
		return false
	}
	id := objectID(origin, key)
	src := sourceOf(origin, key, it.Source)
	if keep[id] {
		probs[key] = append(probs[key], Problem{Source: src, Object: key.String(), Field: "metadata.name",
			Reason: "Duplicate", Message: "the object is defined more than once; the first definition is used"})
		return false
	}
	keep[id] = true
	rec, ps := s.conv.convert(key, it.Object)
	locateProblems(ps, it.Locate)
	locateVirtualServices(rec, it.Locate)
	if it.Context != "" {
		for i := range ps {
			ps[i].Message = it.Context + ": " + ps[i].Message
		}
	}
	probs[key] = append(probs[key], withSource(ps, src)...)
	if rec == nil {
		return false
	}
	return s.putLocked(txn, origin, key, it.Source, rec)
}

func (s *Store) deleteOthersLocked(txn *memdb.Txn, origin string, keep map[string]bool) bool {
	it, err := txn.Get(tableObjects, indexID+"_prefix", originPrefix(origin))
	if err != nil {
		s.logger.Error("registry: list origin", "origin", origin, "error", err)
		return false
	}
	var stale []string
	for obj := it.Next(); obj != nil; obj = it.Next() {
		if row := obj.(*objectRow); row.Origin == origin && !keep[row.ID] {
			stale = append(stale, row.ID)
		}
	}
	for _, id := range stale {
		s.deleteLocked(txn, id)
	}
	return len(stale) > 0
}

// putLocked writes the record of one object, replacing its previous rows.
// It reports whether the model changed (false for a no-op write).
func (s *Store) putLocked(txn *memdb.Txn, origin string, key ObjectKey, source string, rec *record) bool {
	id := objectID(origin, key)
	stampRecord(rec, id, origin)
	if old, _ := txn.First(tableObjects, indexID, id); old != nil {
		if row := old.(*objectRow); reflect.DeepEqual(row.Rec, rec) {
			if row.Source != source { // same content, moved within its file
				must(txn.Insert(tableObjects, &objectRow{ID: id, Origin: origin, Key: key, Source: source, Rec: row.Rec}))
				return true
			}
			return false
		}
		deleteDerivedLocked(txn, old.(*objectRow).Rec)
	}
	must(txn.Insert(tableObjects, &objectRow{ID: id, Origin: origin, Key: key, Source: source, Rec: rec}))
	for table, r := range rec.rows() {
		must(txn.Insert(table, r))
	}
	return true
}

// stampRecord gives the rows of a record their IDs, deterministically, so
// that an unchanged object yields an equal record.
func stampRecord(rec *record, id, origin string) {
	for i, r := range rec.Services {
		r.ID, r.Object, r.Origin = fmt.Sprintf("%s\x1fs%d", id, i), id, origin
	}
	for i, r := range rec.Endpoints {
		r.ID, r.Object, r.Origin = fmt.Sprintf("%s\x1fe%d", id, i), id, origin
	}
	for i, r := range rec.Workloads {
		r.ID, r.Object, r.Origin = fmt.Sprintf("%s\x1fw%d", id, i), id, origin
	}
	for i, r := range rec.Policies {
		r.ID, r.Object, r.Origin = fmt.Sprintf("%s\x1fp%d", id, i), id, origin
	}
}

func (s *Store) deleteLocked(txn *memdb.Txn, id string) bool {
	old, err := txn.First(tableObjects, indexID, id)
	must(err)
	if old == nil {
		return false
	}
	must(txn.Delete(tableObjects, old))
	deleteDerivedLocked(txn, old.(*objectRow).Rec)
	return true
}

// deleteDerivedLocked deletes the rows an object's record put in the
// derived tables: its objectRow holds the very rows putLocked inserted.
func deleteDerivedLocked(txn *memdb.Txn, rec *record) {
	for table, r := range rec.rows() {
		must(txn.Delete(table, r))
	}
}

// must panics on a memdb error: with a fixed schema and well-formed rows
// these only happen on programming errors.
func must(err error) {
	if err != nil {
		panic(fmt.Sprintf("registry: memdb: %v", err))
	}
}

// sourceOf is where a problem is reported: the item's own source, the
// file for a file origin, or ns/name for an API origin such as "kube".
func sourceOf(origin string, key ObjectKey, itemSource string) string {
	switch {
	case itemSource != "":
		return itemSource
	case strings.ContainsAny(origin, "/.\\"):
		return origin
	}
	return key.Namespace + "/" + key.Name
}

func withSource(ps []Problem, src string) []Problem {
	for i := range ps {
		if ps[i].Source == "" {
			ps[i].Source = src
		}
	}
	return ps
}

func locateProblems(ps []Problem, locate func(string) string) {
	if locate == nil {
		return
	}
	for i := range ps {
		if ps[i].Field != "" && ps[i].Source == "" {
			ps[i].Source = locate(ps[i].Field)
		}
	}
}

// UpsertBatch is Upsert for many objects of one origin in one transaction
// (e.g. an informer's initial list): one revision and one signal for all.
// Each invalid object keeps its last good version. It returns the batch's
// problems.
func (s *Store) UpsertBatch(origin string, objs []runtime.Object) []Problem {
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []Problem
	txn := s.writeTxn()
	changed := false
	for _, obj := range objs {
		key, err := keyOf(obj)
		if err != nil {
			all = append(all, Problem{Source: origin, Reason: "InvalidObject", Message: err.Error()})
			continue
		}
		rec, ps := s.conv.convert(key, obj)
		ps = withSource(ps, sourceOf(origin, key, ""))
		s.setProblemsLocked(origin, key, ps)
		all = append(all, ps...)
		if rec != nil {
			changed = s.putLocked(txn, origin, key, "", rec) || changed
		}
	}
	if changed {
		s.commitLocked(txn)
	} else {
		txn.Abort()
	}
	sortProblems(all)
	return all
}
