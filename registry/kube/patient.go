package kube

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// patientTransport retries GET requests that could not reach the API
// server (the dial failed, so nothing was sent) every interval until the
// request's context ends. While the API server is down the informers' list
// and watch calls wait here instead of failing, so client-go's reflector
// backoff (which grows to 30-60 s) does not build up, and the informers
// resync within about interval once the server is back.
type patientTransport struct {
	next     http.RoundTripper
	interval time.Duration
	logger   *slog.Logger
	down     atomic.Bool
}

func (p *patientTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet {
		return p.next.RoundTrip(req)
	}
	for {
		resp, err := p.next.RoundTrip(req)
		if err == nil || !dialFailed(err) {
			if err == nil && p.down.CompareAndSwap(true, false) {
				p.logger.Info("kube source: API server reachable again", "host", req.URL.Host)
			}
			return resp, err
		}
		if p.down.CompareAndSwap(false, true) {
			p.logger.Warn("kube source: API server unreachable; serving the last known state and retrying",
				"host", req.URL.Host, "error", err)
		}
		t := time.NewTimer(p.interval)
		select {
		case <-req.Context().Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
	}
}

// dialFailed reports whether err means no connection was made.
func dialFailed(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
