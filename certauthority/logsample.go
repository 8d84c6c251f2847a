package certauthority

import (
	"log/slog"
	"sync"
	"time"
)

// Refusal log sampling: the first refusalLogBurst refusals of each refusalLogWindow are
// logged; later ones in the window are only counted, and the count is logged when the
// window ends. controlplane_ca_refusals_total stays exact.
const (
	refusalLogBurst  = 10
	refusalLogWindow = 10 * time.Second
)

// logSampler lets burst lines per window through and counts the rest.
type logSampler struct {
	log    *slog.Logger
	burst  int
	window time.Duration

	mu      sync.Mutex
	start   time.Time // of the current window
	logged  int
	dropped int
}

func newLogSampler(log *slog.Logger, burst int, window time.Duration) *logSampler {
	return &logSampler{log: log, burst: burst, window: window}
}

// allow reports whether a line may be logged now. The first line dropped in a window
// schedules the summary for the window's end.
func (s *logSampler) allow() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if s.dropped == 0 && now.Sub(s.start) >= s.window {
		s.start, s.logged = now, 0
	}
	if s.logged < s.burst {
		s.logged++
		return true
	}
	if s.dropped == 0 {
		time.AfterFunc(s.start.Add(s.window).Sub(now), s.flush)
	}
	s.dropped++
	return false
}

// flush logs how many lines were dropped and starts a new window.
func (s *logSampler) flush() {
	s.mu.Lock()
	n := s.dropped
	s.start, s.logged, s.dropped = time.Now(), 0, 0
	s.mu.Unlock()
	if n == 0 {
		return
	}
	s.log.Warn("certificate request refusals not logged (sampled)", "count", n, "window", s.window.String(),
		"first_per_window", s.burst, "metric", "controlplane_ca_refusals_total")
}
