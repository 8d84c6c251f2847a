package server

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// httpHandler serves health, metrics and, for loopback clients unless
// DebugOpen, the debug views and the status page.
func (s *Server) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{Registry: s.metrics.reg}))
	mux.Handle("/debug/", s.debugGuard(s.debugMux()))
	if s.page != nil {
		mux.Handle("/", s.debugGuard(s.page))
	}
	return mux
}

// debugMux serves the /debug/ views (also to debug clients over xDS, see
// istioDebug).
func (s *Server) debugMux() *http.ServeMux {
	debug := http.NewServeMux()
	debug.HandleFunc("GET /debug/syncz", s.syncz)
	debug.HandleFunc("GET /debug/config_dump", s.configDump)
	debug.HandleFunc("GET /debug/registryz", s.registryz)
	debug.HandleFunc("GET /debug/connections", s.connections)
	debug.HandleFunc("GET /debug/problems", s.problems)
	debug.HandleFunc("/debug/pprof/", pprof.Index)
	debug.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	debug.HandleFunc("/debug/pprof/profile", pprof.Profile)
	debug.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	debug.HandleFunc("/debug/pprof/trace", pprof.Trace)
	debug.HandleFunc("GET /debug/trustbundle", s.trustBundlez)
	for _, r := range s.extraDebug {
		debug.Handle(r.pattern, r.h)
	}
	return debug
}

// readyz answers 200 once the server serves and has pushed the model, with
// a line per config source saying whether it can be reached. A source cut
// off does not make the server unready: it serves the last config the
// source gave, which is what proxies need (taking every replica out of
// its Service during an API outage would leave them with nothing).
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if n, _ := s.Pushes(); !s.ready.Load() || n == 0 {
		http.Error(w, "not ready", http.StatusServiceUnavailable)
		return
	}
	w.Write([]byte("ok\n"))
	for _, line := range s.sources.lines(r.Context(), s.cfg.SourceChecks) {
		w.Write([]byte(line + "\n"))
	}
}

// pageURL is the status page's address for a log line: the bound address,
// with loopback for an unspecified host (":15014").
func pageURL(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return "http://" + a.String() + "/"
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/"
}

// debugGuard refuses clients that are not on loopback unless DebugOpen.
func (s *Server) debugGuard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.cfg.DebugOpen && !isLoopback(r.RemoteAddr) {
			http.Error(w, "debug endpoints and the status page are served to loopback clients only (see --debug-open)", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func isLoopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// writeJSON writes v as indented JSON.
func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}
