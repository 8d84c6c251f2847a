package server

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// SourceCheck tells whether a config source (e.g. the Kubernetes API) can
// be reached now. While it cannot, the server keeps serving the last
// config the source gave, and /readyz says so.
type SourceCheck struct {
	Name  string                          // e.g. "kubernetes https://10.96.0.1:443"
	Check func(ctx context.Context) error // nil when reachable
}

// sourceCheckTimeout bounds one check, so /readyz answers promptly.
const sourceCheckTimeout = 2 * time.Second

// sourceStates remembers since when each source has been unreachable.
type sourceStates struct {
	mu   sync.Mutex
	down map[string]time.Time
}

// lines checks every source and returns one line each, for /readyz.
func (s *sourceStates) lines(ctx context.Context, checks []SourceCheck) []string {
	out := make([]string, 0, len(checks))
	for _, c := range checks {
		cctx, cancel := context.WithTimeout(ctx, sourceCheckTimeout)
		err := c.Check(cctx)
		cancel()
		out = append(out, s.line(c.Name, err, time.Now()))
	}
	return out
}

func (s *sourceStates) line(name string, err error, now time.Time) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		delete(s.down, name)
		return fmt.Sprintf("source %s: reachable", name)
	}
	if s.down == nil {
		s.down = map[string]time.Time{}
	}
	since, ok := s.down[name]
	if !ok {
		since, s.down[name] = now, now
	}
	return fmt.Sprintf("source %s: UNREACHABLE for %s, serving the last config it gave: %v", name, now.Sub(since).Round(time.Second), err)
}
