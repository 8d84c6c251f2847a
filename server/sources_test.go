package server

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSourceStatesLine(t *testing.T) {
	var s sourceStates
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	refused := errors.New("connection refused")
	for _, step := range []struct {
		err  error
		at   time.Duration
		want string
	}{
		{nil, 0, "source kube: reachable"},
		{refused, time.Second, "source kube: UNREACHABLE for 0s, serving the last config it gave: connection refused"},
		{refused, 43 * time.Second, "source kube: UNREACHABLE for 42s"},
		{nil, 50 * time.Second, "source kube: reachable"},
		{refused, 60 * time.Second, "source kube: UNREACHABLE for 0s"},
	} {
		if got := s.line("kube", step.err, t0.Add(step.at)); !strings.HasPrefix(got, step.want) {
			t.Errorf("at %s: %q, want it to start %q", step.at, got, step.want)
		}
	}
}
