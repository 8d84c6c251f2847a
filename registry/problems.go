package registry

import (
	"cmp"
	"maps"
	"slices"
)

// Problems returns the current problems of all origins, sorted by source,
// object and field.
func (s *Store) Problems() []Problem {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Problem
	for _, byKey := range s.problems {
		for _, ps := range byKey {
			out = append(out, ps...)
		}
	}
	sortProblems(out)
	return out
}

func (s *Store) originProblemsLocked(origin string) []Problem {
	var out []Problem
	for _, ps := range s.problems[origin] {
		out = append(out, ps...)
	}
	sortProblems(out)
	return out
}

func sortProblems(ps []Problem) {
	slices.SortFunc(ps, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.Source, b.Source), cmp.Compare(a.Object, b.Object),
			cmp.Compare(a.Field, b.Field), cmp.Compare(a.Reason, b.Reason), cmp.Compare(a.Message, b.Message))
	})
}

// setProblemsLocked replaces the problems of one object, logging new ones.
func (s *Store) setProblemsLocked(origin string, key ObjectKey, ps []Problem) {
	byKey := s.problems[origin]
	if byKey == nil {
		byKey = map[ObjectKey][]Problem{}
		s.problems[origin] = byKey
	}
	if !slices.Equal(byKey[key], ps) {
		s.logProblems(ps)
	}
	if len(ps) == 0 {
		delete(byKey, key)
	} else {
		byKey[key] = ps
	}
	if len(byKey) == 0 {
		delete(s.problems, origin)
	}
}

// replaceProblemsLocked replaces all problems of an origin.
func (s *Store) replaceProblemsLocked(origin string, probs map[ObjectKey][]Problem) {
	old := s.problems[origin]
	for _, key := range slices.Collect(maps.Keys(probs)) {
		if len(probs[key]) == 0 {
			delete(probs, key)
		} else if !slices.Equal(old[key], probs[key]) {
			s.logProblems(probs[key])
		}
	}
	if len(probs) == 0 {
		delete(s.problems, origin)
		return
	}
	s.problems[origin] = probs
}

func (s *Store) logProblems(ps []Problem) {
	for _, p := range ps {
		s.logger.Warn("registry: problem in input", "object", p.Object, "file", p.Source,
			"field", p.Field, "reason", p.Reason, "error", p.Message)
	}
}
