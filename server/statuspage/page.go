// Package statuspage serves the status page an operator opens in a
// browser on the HTTP port (15014): an overview, the connected proxies with
// their sync state and NACKs, a proxy's config, the services of the model
// and the input problems. Every view is server-rendered HTML (readable
// without JavaScript) with its data also served as JSON under /api/, which
// the embedded script polls to refresh the view in place. Its assets are
// embedded; nothing is loaded from elsewhere.
//
// It computes nothing a proxy's state depends on: states come from what
// CSDS reports (server.ClientStatus read by server/status), config from
// the /debug/config_dump source, problems from /debug/problems'.
package statuspage

import (
	"cmp"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"runtime/debug"
	"sync"
	"time"

	statusv3 "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/librarymesh/controlplane/registry"
	"github.com/librarymesh/controlplane/server"
)

//go:embed assets
var assets embed.FS

// Server is what the page reads from the xDS server; *server.Server is one.
type Server interface {
	ClientStatus() *statusv3.ClientStatusResponse
	Connections() []server.Connection
	ConfigDump(id string) (server.ConfigDump, error)
	Problems() []registry.Problem
	Stats() server.Stats
}

// Source is a registry source and whether it has loaded everything.
type Source struct {
	Name   string // e.g. "folder examples/library"
	Synced func() bool
}

// Config configures a Page.
type Config struct {
	Server   Server
	Model    interface{ View() registry.View } // the registry
	Sources  []Source
	Gatherer prometheus.Gatherer // read for the CA's issued and refused counters; may be nil
	RootPEM  func() []byte       // the CA's root certificate; nil when no CA
	Replica  string              // this control plane's name; default the host name
	Version  string              // default the binary's module version and VCS revision
	Logger   *slog.Logger
}

// Page is the status page's http.Handler.
type Page struct {
	cfg      Config
	views    map[string]*template.Template
	mux      *http.ServeMux
	problems *problemTracker
}

// New parses the embedded templates and returns the page.
func New(cfg Config) (*Page, error) {
	if cfg.Server == nil || cfg.Model == nil {
		return nil, fmt.Errorf("statuspage: config needs a Server and a Model")
	}
	cfg.Replica = cmp.Or(cfg.Replica, hostname())
	cfg.Version = cmp.Or(cfg.Version, buildVersion())
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Page{cfg: cfg, views: map[string]*template.Template{}, problems: newProblemTracker()}
	for _, v := range []string{"overview", "proxies", "proxy", "services", "problems", "notfound"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(assets, "assets/layout.html", "assets/"+v+".html")
		if err != nil {
			return nil, fmt.Errorf("statuspage: template %s: %w", v, err)
		}
		p.views[v] = t
	}
	p.routes()
	return p, nil
}

func (p *Page) routes() {
	static, _ := fs.Sub(assets, "assets/static")
	m := http.NewServeMux()
	m.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(static)))
	m.HandleFunc("GET /{$}", p.html("overview", func(r *http.Request) any { return p.overview() }))
	m.HandleFunc("GET /proxies", p.html("proxies", func(r *http.Request) any { return p.proxies(queryOf(r)) }))
	m.HandleFunc("GET /proxy", p.proxyPage)
	m.HandleFunc("GET /proxy/config.json", p.proxyDownload)
	m.HandleFunc("GET /services", p.html("services", func(r *http.Request) any { return p.services(r.URL.Query().Get("q")) }))
	m.HandleFunc("GET /problems", p.html("problems", func(r *http.Request) any { return p.problemList() }))
	m.HandleFunc("GET /api/overview", p.json(func(r *http.Request) any { return p.overview() }))
	m.HandleFunc("GET /api/proxies", p.json(func(r *http.Request) any { return p.proxies(queryOf(r)) }))
	m.HandleFunc("GET /api/services", p.json(func(r *http.Request) any { return p.services(r.URL.Query().Get("q")) }))
	m.HandleFunc("GET /api/problems", p.json(func(r *http.Request) any { return p.problemList() }))
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		p.render(w, "notfound", r.URL.Path)
	})
	p.mux = m
}

// ServeHTTP implements http.Handler.
func (p *Page) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.mux.ServeHTTP(w, r) }

// html renders view with the data data returns.
func (p *Page) html(view string, data func(*http.Request) any) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { p.render(w, view, data(r)) }
}

// json writes what data returns as JSON, not indented (the page polls it).
func (p *Page) json(data func(*http.Request) any) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if err := json.NewEncoder(w).Encode(data(r)); err != nil {
			p.cfg.Logger.Warn("status page: write JSON", "path", r.URL.Path, "err", err)
		}
	}
}

// layoutData is what layout.html gets: the view's data and the page frame.
type layoutData struct {
	View    string
	Replica string
	Version string
	Data    any
}

func (p *Page) render(w http.ResponseWriter, view string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	err := p.views[view].Execute(w, layoutData{View: view, Replica: p.cfg.Replica, Version: p.cfg.Version, Data: data})
	if err != nil {
		p.cfg.Logger.Warn("status page: render", "view", view, "err", err)
	}
}

func hostname() string {
	if n := os.Getenv("POD_NAME"); n != "" {
		return n
	}
	n, err := os.Hostname()
	if err != nil {
		return "controlplane"
	}
	return n
}

// buildVersion is the main module's version and, when built from a
// checkout, its VCS revision.
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " (" + s.Value[:12] + ")"
		}
	}
	return v
}

// problemTracker remembers when the page first saw each problem, so the
// problems view lists the newest first (problems carry no time).
type problemTracker struct {
	mu    sync.Mutex
	first map[string]time.Time
}

func newProblemTracker() *problemTracker { return &problemTracker{first: map[string]time.Time{}} }

// seen returns when each problem was first seen and forgets the ones gone.
func (t *problemTracker) seen(ps []registry.Problem, now time.Time) []time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]time.Time, len(ps))
	keep := make(map[string]time.Time, len(ps))
	for i, pr := range ps {
		k := pr.Error()
		at, ok := t.first[k]
		if !ok {
			at = now
		}
		keep[k], out[i] = at, at
	}
	t.first = keep
	return out
}
