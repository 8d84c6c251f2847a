package status

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// versionWidth is how much of a version the table shows.
const versionWidth = 12

// WriteTable prints proxies as a table: NAME, KIND, then per type the
// state and version; NACK errors follow the table, one line each.
func WriteTable(w io.Writer, proxies []Proxy) error {
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprint(tw, "NAME\tKIND")
	for _, t := range Types {
		fmt.Fprint(tw, "\t"+t.Short)
	}
	fmt.Fprintln(tw)
	var nacks []string
	for _, p := range proxies {
		fmt.Fprintf(tw, "%s\t%s", p.ID, orDash(p.Kind))
		for _, t := range Types {
			ts, ok := p.Types[t.Short]
			fmt.Fprint(tw, "\t"+cell(ts, ok))
			if ts.State == Nacked {
				nacks = append(nacks, fmt.Sprintf("%s %s NACKED version %s: %s", p.ID, t.Short, ts.Nacked, ts.Error))
			}
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	for _, n := range nacks {
		if _, err := fmt.Fprintln(w, n); err != nil {
			return fmt.Errorf("write table: %w", err)
		}
	}
	return nil
}

// cell is one type's column: `SYNCED (v)`, `STALE (v)`, `NACKED (v)` with
// the rejected version, or NOT SENT.
func cell(ts TypeStatus, ok bool) string {
	if !ok || ts.State == NotSent {
		return string(NotSent)
	}
	v := ts.Version
	if ts.State == Nacked {
		v = ts.Nacked
	}
	if v == "" {
		return string(ts.State)
	}
	return fmt.Sprintf("%s (%s)", ts.State, short(v))
}

func short(v string) string {
	if len(v) > versionWidth {
		return v[:versionWidth]
	}
	return v
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
