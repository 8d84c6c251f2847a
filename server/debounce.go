package server

import (
	"context"
	"time"
)

// pushLoop is the one goroutine that rebuilds snapshots after registry
// changes. The wait is adaptive: a change after a quiet spell (no push
// within Debounce) is pushed at once (or after DebounceQuiet, when set), so
// a lone change waits for nothing. Changes in quick succession wait for the
// debounce window to pass without another change, but never longer than
// MaxDebounce, so bursts coalesce and a steady stream of changes never
// starves the proxies.
func (s *Server) pushLoop(ctx context.Context) {
	signal, cancel := s.cfg.Registry.Subscribe()
	defer cancel()
	s.push(time.Now()) // changes between New and Subscribe
	lastPush := time.Now()
	s.idleGC.pushed()
	idle := time.NewTicker(idleGCAfter)
	defer idle.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-idle.C:
			s.idleGC.tick()
			continue
		case <-signal:
		}
		first := time.Now()
		if !s.debounce(ctx, signal, first, first.Sub(lastPush) > s.cfg.Debounce) {
			return
		}
		s.metrics.debounce.Observe(time.Since(first).Seconds())
		s.push(first)
		lastPush = time.Now()
		s.idleGC.pushed()
		idle.Reset(idleGCAfter)
	}
}

// debounce waits out a burst of signals that started at first; after a
// quiet spell the first wait is DebounceQuiet (none by default). It returns
// false if ctx ended.
func (s *Server) debounce(ctx context.Context, signal <-chan struct{}, first time.Time, quiet bool) bool {
	deadline := first.Add(s.cfg.MaxDebounce)
	wait := s.cfg.Debounce
	if quiet {
		if s.cfg.DebounceQuiet <= 0 {
			return ctx.Err() == nil
		}
		wait = min(wait, s.cfg.DebounceQuiet)
	}
	timer := time.NewTimer(wait)
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
func (s *Server) push(observed time.Time) {
	start := time.Now()
	built, changed := s.pusher.rebuild(observed)
	rev := s.pusher.revision()
	s.metrics.pushSeconds.Observe(time.Since(start).Seconds())
	if built > 0 || changed > 0 {
		s.log.Info("config pushed", "revision", rev, "rebuilt", built, "changed", changed,
			"took", time.Since(start).Round(time.Microsecond))
	}
	s.lastPush.Store(&Push{At: start, Took: time.Since(start), Revision: rev, Rebuilt: built, Changed: changed})
	s.pushes.Add(1)
	s.pushedRev.Store(rev)
}
