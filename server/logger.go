package server

import (
	"context"
	"fmt"
	"log/slog"
)

// gcpLogger adapts slog to go-control-plane's four-method logger. Its
// debug and info chatter goes to slog's debug level.
type gcpLogger struct{ log *slog.Logger }

func (l gcpLogger) Debugf(format string, args ...any) { l.logf(slog.LevelDebug, format, args) }
func (l gcpLogger) Infof(format string, args ...any)  { l.logf(slog.LevelDebug, format, args) }
func (l gcpLogger) Warnf(format string, args ...any)  { l.logf(slog.LevelWarn, format, args) }
func (l gcpLogger) Errorf(format string, args ...any) { l.logf(slog.LevelError, format, args) }

func (l gcpLogger) logf(level slog.Level, format string, args []any) {
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	l.log.Log(context.Background(), level, fmt.Sprintf(format, args...), "component", "go-control-plane")
}
