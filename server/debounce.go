package server

import (
	"context"
	"time"
)

// pushLoop is the one goroutine that rebuilds snapshots after registry
// changes. After a change it waits for the debounce window to pass without
// another change, but never longer than MaxDebounce, so bursts coalesce and
// a steady stream of changes never starves the proxies.
func (s *Server) pushLoop(ctx context.Context) {
	signal, cancel := s.cfg.Registry.Subscribe()
	defer cancel()
	s.push(ctx, time.Now()) // changes between New and Subscribe
	for {
		select {
		case <-ctx.Done():
			return
		case <-signal:
		}
		first := time.Now()
		if !s.debounce(ctx, signal, first) {
			return
		}
		s.metrics.debounce.Observe(time.Since(first).Seconds())
		s.push(ctx, first)
	}
}

// debounce waits out a burst of signals that started at first. It returns
// false if ctx ended.
func (s *Server) debounce(ctx context.Context, signal <-chan struct{}, first time.Time) bool {
	deadline := first.Add(s.cfg.MaxDebounce)
	timer := time.NewTimer(s.cfg.Debounce)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
			return true
		case <-signal:
			wait := min(s.cfg.Debounce, time.Until(deadline))
			if wait <= 0 {
				return true
			}
			timer.Reset(wait)
		}
	}
}

// push rebuilds the proxies affected since the last push.
func (s *Server) push(ctx context.Context, observed time.Time) {
	start := time.Now()
	built, changed := s.pusher.rebuild(ctx, observed)
	rev := s.pusher.revision()
	s.metrics.pushSeconds.Observe(time.Since(start).Seconds())
	if built > 0 || changed > 0 {
		s.log.Info("config pushed", "revision", rev, "rebuilt", built, "changed", changed,
			"took", time.Since(start).Round(time.Microsecond))
	}
	s.pushes.Add(1)
	s.pushedRev.Store(rev)
}
