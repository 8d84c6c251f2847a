package kube

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// startingWindow is how long after the API server was unreachable a 503
// answer to a GET is taken for "still starting" and retried every interval.
const startingWindow = time.Minute

// patientTransport retries GET requests that could not reach the API
// server (the dial failed, so nothing was sent) every interval until the
// request's context ends. While the API server is down the informers' list
// and watch calls wait here instead of failing, so client-go's reflector
// backoff (which grows to 30-60 s) does not build up, and the informers
// resync within about interval once the server is back.
//
// A restarted API server answers requests for custom resources with 503 and
// Retry-After: 5s until their storage is ready (about a second later), and
// client-go honours the 5 s. Within startingWindow of an outage a 503 to a
// GET is therefore retried every interval too.
type patientTransport struct {
	next     http.RoundTripper
	interval time.Duration
	logger   *slog.Logger
	down     atomic.Bool
	lastDown atomic.Int64 // UnixNano of the last failed dial
}

func (p *patientTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet {
		return p.next.RoundTrip(req)
	}
	var dialErr error // the last failed dial, reported if the context ends during a retry's dial
	for {
		resp, err := p.next.RoundTrip(req)
		switch {
		case err == nil && p.starting(resp):
			drain(resp)
		case err != nil && dialErr != nil && req.Context().Err() != nil:
			return nil, dialErr
		case err == nil || !dialFailed(err):
			if err == nil && p.down.CompareAndSwap(true, false) {
				p.logger.Info("kube source: API server reachable again", "host", req.URL.Host)
			}
			return resp, err
		default:
			dialErr = err
			p.lastDown.Store(time.Now().UnixNano())
			if p.down.CompareAndSwap(false, true) {
				p.logger.Warn("kube source: API server unreachable; serving the last known state and retrying",
					"host", req.URL.Host, "error", err)
			}
		}
		t := time.NewTimer(p.interval)
		select {
		case <-req.Context().Done():
			t.Stop()
			if err == nil {
				err = req.Context().Err()
			}
			return nil, err
		case <-t.C:
		}
	}
}

// starting reports whether resp is a 503 from an API server that was
// unreachable within startingWindow.
func (p *patientTransport) starting(resp *http.Response) bool {
	last := p.lastDown.Load()
	return resp.StatusCode == http.StatusServiceUnavailable && last != 0 &&
		time.Since(time.Unix(0, last)) < startingWindow
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// dialFailed reports whether err means no connection was made.
func dialFailed(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
