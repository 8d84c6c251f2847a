package registry

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"time"
)

// Limits on problems, so that bad input in bulk (100k broken documents)
// costs bounded memory and log lines.
const (
	// MaxOriginProblems is how many problems one origin (a file) keeps;
	// the rest are counted in one more problem (ReasonTooManyProblems).
	MaxOriginProblems = 100
	// MaxProblems is how many problems Problems returns; the rest are
	// counted in one more problem.
	MaxProblems = 1000
	// problemLogBurst problem log lines are written per problemLogWindow;
	// the rest are counted and the count is logged when the window ends.
	problemLogBurst  = 50
	problemLogWindow = 10 * time.Second
)

// ReasonTooManyProblems is a problem that counts problems not kept.
const ReasonTooManyProblems = "TooManyProblems"

// MoreProblems is the problem that stands for n problems of source not kept.
func MoreProblems(source string, n int) Problem {
	return Problem{Source: source, Reason: ReasonTooManyProblems,
		Message: fmt.Sprintf("and %d more problems, not kept (at most %d per file)", n, MaxOriginProblems)}
}

// Problems returns the current problems of all origins and of merging
// (host conflicts), sorted by source, object and field. At most
// MaxProblems are returned, then one that counts the rest.
func (s *Store) Problems() []Problem {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Problem
	for _, byKey := range s.problems {
		for _, ps := range byKey {
			out = append(out, ps...)
		}
	}
	out = append(out, s.view.Load().mergeProblems()...)
	sortProblems(out)
	if over := len(out) - MaxProblems; over > 0 {
		out = append(out[:MaxProblems], Problem{Reason: ReasonTooManyProblems,
			Message: fmt.Sprintf("and %d more problems, not shown (at most %d)", over, MaxProblems)})
	}
	return out
}

// SuppressedProblemLogs is how many problem log lines were not written
// because of the log rate limit.
func (s *Store) SuppressedProblemLogs() uint64 { return s.logLimit.suppressedTotal.Load() }

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

// replaceProblemsLocked replaces all problems of an origin, keeping at
// most MaxOriginProblems of them.
func (s *Store) replaceProblemsLocked(origin string, probs map[ObjectKey][]Problem, dropped int) {
	capOriginProblems(origin, probs, dropped)
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

// capOriginProblems keeps the first MaxOriginProblems problems of an
// origin (by object, then as listed) and counts the rest, plus dropped
// ones its source already left out, in one more.
func capOriginProblems(origin string, probs map[ObjectKey][]Problem, dropped int) {
	total := 0
	for _, ps := range probs {
		total += len(ps)
	}
	if total <= MaxOriginProblems && dropped == 0 {
		return
	}
	keys := slices.SortedFunc(maps.Keys(probs), func(a, b ObjectKey) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	left := MaxOriginProblems
	for _, k := range keys {
		keep := min(left, len(probs[k]))
		dropped += len(probs[k]) - keep
		left -= keep
		probs[k] = probs[k][:keep:keep]
	}
	probs[ObjectKey{}] = append(probs[ObjectKey{}], MoreProblems(origin, dropped))
}

func (s *Store) logProblems(ps []Problem) {
	for _, p := range ps {
		if !s.logLimit.allow(time.Now(), s.logSuppressed) {
			continue
		}
		s.logger.Warn("registry: problem in input", "object", p.Object, "file", p.Source,
			"field", p.Field, "reason", p.Reason, "error", p.Message)
	}
}

// logSuppressed logs how many problem lines a window left out.
func (s *Store) logSuppressed(n int) {
	s.logger.Warn("registry: problem log lines suppressed (rate limit)", "count", n,
		"limit", problemLogBurst, "window", problemLogWindow)
}

// logLimiter lets problemLogBurst lines through per problemLogWindow and
// counts the rest. Guarded by Store.mu.
type logLimiter struct {
	windowStart     time.Time
	logged          int
	suppressed      int
	suppressedTotal atomic.Uint64
}

// allow reports whether a line may be logged now; when a new window starts
// it first reports the previous window's suppressed count.
func (l *logLimiter) allow(now time.Time, report func(int)) bool {
	if now.Sub(l.windowStart) >= problemLogWindow {
		if l.suppressed > 0 {
			report(l.suppressed)
		}
		l.windowStart, l.logged, l.suppressed = now, 0, 0
	}
	if l.logged < problemLogBurst {
		l.logged++
		return true
	}
	l.suppressed++
	l.suppressedTotal.Add(1)
	return false
}
