package statuspage

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/librarymesh/controlplane/server"
	"github.com/librarymesh/controlplane/server/status"
)

// pageSize is how many proxies a page of the table shows unless ?size=.
const (
	pageSize    = 50
	maxPageSize = 1000
)

// proxyQuery selects proxies: text, worst state and page.
type proxyQuery struct {
	Q     string
	State string // "", or a status.State
	Page  int    // from 1
	Size  int
}

func queryOf(r *http.Request) proxyQuery {
	v := r.URL.Query()
	q := proxyQuery{Q: strings.TrimSpace(v.Get("q")), State: v.Get("state"), Page: 1, Size: pageSize}
	if n, err := strconv.Atoi(v.Get("page")); err == nil && n > 0 {
		q.Page = n
	}
	if n, err := strconv.Atoi(v.Get("size")); err == nil && n > 0 {
		q.Size = min(n, maxPageSize)
	}
	return q
}

// typeCell is one xDS type of a proxy.
type typeCell struct {
	Type    string `json:"type"`
	State   string `json:"state"`
	Version string `json:"version,omitempty"`
	Nacked  string `json:"nacked,omitempty"`
	Error   string `json:"error,omitempty"`
}

// proxyRow is one connection in the proxies table.
type proxyRow struct {
	Conn        string     `json:"connection"`
	ID          string     `json:"id"`
	Kind        string     `json:"kind"`
	Namespace   string     `json:"namespace"`
	Identity    string     `json:"identity"`
	ConnectedAt time.Time  `json:"connectedAt"`
	Replica     string     `json:"replica"`
	State       string     `json:"state"` // the worst of its types
	Types       []typeCell `json:"types"`
}

// proxyList is one page of the proxies table and the counts by state.
type proxyList struct {
	Q       string         `json:"q"`
	State   string         `json:"state"`
	States  []string       `json:"states"`
	Types   []string       `json:"types"`
	Total   int            `json:"total"`
	ByState map[string]int `json:"byState"`
	Matched int            `json:"matched"`
	Page    int            `json:"page"`
	Pages   int            `json:"pages"`
	Size    int            `json:"size"`
	Rows    []proxyRow     `json:"rows"`
}

var allStates = []string{string(status.Synced), string(status.Stale), string(status.Nacked), string(status.NotSent)}

// allProxies reads every connection's state as CSDS reports it, joined
// with what /debug/connections says of it.
func (p *Page) allProxies() []proxyRow {
	conns := map[string]server.Connection{}
	for _, c := range p.cfg.Server.Connections() {
		conns[c.Conn] = c
	}
	proxies := status.FromResponse(p.cfg.Server.ClientStatus())
	rows := make([]proxyRow, 0, len(proxies))
	for _, px := range proxies {
		c := conns[px.Conn]
		row := proxyRow{Conn: px.Conn, ID: px.ID, Kind: px.Kind, Namespace: c.Namespace, Identity: identity(c),
			ConnectedAt: c.ConnectedAt, Replica: p.cfg.Replica, State: string(px.Worst()), Types: make([]typeCell, 0, len(status.Types))}
		for _, t := range status.Types {
			ts, ok := px.Types[t.Short]
			if !ok {
				ts.State = status.NotSent
			}
			row.Types = append(row.Types, typeCell{Type: t.Short, State: string(ts.State), Version: ts.Version, Nacked: ts.Nacked, Error: ts.Error})
		}
		rows = append(rows, row)
	}
	return rows
}

// identity is the proven identity, else the one the node claims.
func identity(c server.Connection) string {
	if c.Identity != "" {
		return c.Identity
	}
	if c.ServiceAccount != "" {
		return c.Namespace + "/" + c.ServiceAccount + " (claimed)"
	}
	return ""
}

// proxies filters, counts and pages the proxies.
func (p *Page) proxies(q proxyQuery) proxyList {
	all := p.allProxies()
	out := proxyList{Q: q.Q, State: q.State, States: allStates, Total: len(all), ByState: map[string]int{}, Size: q.Size}
	for _, t := range status.Types {
		out.Types = append(out.Types, t.Short)
	}
	var matched []proxyRow
	needle := strings.ToLower(q.Q)
	for _, r := range all {
		out.ByState[r.State]++
		if (q.State == "" || r.State == q.State) && (needle == "" || r.matches(needle)) {
			matched = append(matched, r)
		}
	}
	out.Matched = len(matched)
	out.Pages = max(1, (len(matched)+q.Size-1)/q.Size)
	out.Page = min(q.Page, out.Pages)
	lo := (out.Page - 1) * q.Size
	out.Rows = matched[lo:min(lo+q.Size, len(matched))]
	if out.Rows == nil {
		out.Rows = []proxyRow{}
	}
	return out
}

// matches reports whether needle (lower case) is in the row's text.
func (r proxyRow) matches(needle string) bool {
	for _, s := range []string{r.ID, r.Kind, r.Namespace, r.Identity, r.State} {
		if strings.Contains(strings.ToLower(s), needle) {
			return true
		}
	}
	for _, t := range r.Types {
		if t.Error != "" && strings.Contains(strings.ToLower(t.Error), needle) {
			return true
		}
	}
	return false
}

// Link returns the table's URL for another page of the same query.
func (l proxyList) Link(page int) string {
	v := url.Values{}
	if l.Q != "" {
		v.Set("q", l.Q)
	}
	if l.State != "" {
		v.Set("state", l.State)
	}
	if l.Size != pageSize {
		v.Set("size", strconv.Itoa(l.Size))
	}
	v.Set("page", strconv.Itoa(page))
	return "/proxies?" + v.Encode()
}

// resourceView is one resource of a proxy's config.
type resourceView struct {
	Name string
	JSON string // indented
}

// typeView is one xDS type of a proxy's config.
type typeView struct {
	Type      string
	Version   string
	Resources []resourceView
}

// proxyView is a proxy's page.
type proxyView struct {
	Row    proxyRow
	Found  bool
	Dump   server.ConfigDump
	Types  []typeView
	Error  string
	ID     string
	Detail string
}

// proxyPage shows a proxy's state and config, a collapsible list per type.
func (p *Page) proxyPage(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	v := proxyView{ID: id}
	dump, err := p.cfg.Server.ConfigDump(id)
	if err != nil {
		if errors.Is(err, server.ErrNotConnected) {
			w.WriteHeader(http.StatusNotFound)
		} else {
			w.WriteHeader(http.StatusInternalServerError)
		}
		v.Error = err.Error()
		p.render(w, "proxy", v)
		return
	}
	v.Dump, v.Found = dump, true
	for _, row := range p.allProxies() {
		if row.Conn == dump.Conn {
			v.Row = row
		}
	}
	for _, t := range status.Types {
		short := strings.ToLower(t.Short)
		tv := typeView{Type: t.Short, Version: dump.Versions[short]}
		for _, raw := range dump.Resources[short] {
			tv.Resources = append(tv.Resources, resourceView{Name: resourceName(raw), JSON: indent(raw)})
		}
		v.Types = append(v.Types, tv)
	}
	p.render(w, "proxy", v)
}

// proxyDownload serves a proxy's config dump as a JSON file.
func (p *Page) proxyDownload(w http.ResponseWriter, r *http.Request) {
	dump, err := p.cfg.Server.ConfigDump(r.URL.Query().Get("id"))
	if errors.Is(err, server.ErrNotConnected) {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Disposition", `attachment; filename="`+fileName(dump.Conn)+`.config_dump.json"`)
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(dump); err != nil {
		p.cfg.Logger.Warn("status page: write config dump", "node", dump.ID, "err", err)
	}
}

var unsafeFileChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func fileName(s string) string { return unsafeFileChars.ReplaceAllString(s, "_") }

// resourceName is a resource's name field (clusterName for an EDS one).
func resourceName(raw json.RawMessage) string {
	var n struct {
		Name        string `json:"name"`
		ClusterName string `json:"clusterName"`
	}
	if err := json.Unmarshal(raw, &n); err != nil {
		return "(unreadable)"
	}
	if n.Name != "" {
		return n.Name
	}
	return n.ClusterName
}

func indent(raw json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return string(raw)
	}
	return b.String()
}
