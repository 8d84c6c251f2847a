package statuspage

import (
	"cmp"
	"slices"
	"strings"
	"time"
)

// problemRow is one input problem.
type problemRow struct {
	Source    string    `json:"source"` // file:line or ns/name
	Object    string    `json:"object"`
	Field     string    `json:"field"`
	Reason    string    `json:"reason"`
	Message   string    `json:"message"`
	FirstSeen time.Time `json:"firstSeen"`
}

// problemList is the problems view, newest first.
type problemList struct {
	Rows []problemRow `json:"rows"`
}

// problemList reads /debug/problems' source, newest first (then by source).
func (p *Page) problemList() problemList {
	ps := p.cfg.Server.Problems()
	seen := p.problems.seen(ps, time.Now())
	out := problemList{Rows: make([]problemRow, len(ps))}
	for i, pr := range ps {
		out.Rows[i] = problemRow{Source: pr.Source, Object: pr.Object, Field: pr.Field, Reason: pr.Reason, Message: pr.Message, FirstSeen: seen[i]}
	}
	slices.SortStableFunc(out.Rows, func(a, b problemRow) int {
		return cmp.Or(b.FirstSeen.Compare(a.FirstSeen), strings.Compare(a.Source, b.Source))
	})
	return out
}
