package kube

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/librarymesh/controlplane/internal/testutil"
)

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// newPatient returns a patient transport over a real one and the count of
// requests it sent (tries, whether the dial failed or not).
func newPatient() (*patientTransport, *atomic.Int32) {
	var tries atomic.Int32
	next := countingTransport{next: &http.Transport{}, tries: &tries}
	return &patientTransport{next: next, interval: 50 * time.Millisecond, logger: slog.New(slog.DiscardHandler)}, &tries
}

type countingTransport struct {
	next  http.RoundTripper
	tries *atomic.Int32
}

func (c countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c.tries.Add(1)
	return c.next.RoundTrip(req)
}

func TestPatientTransportWaitsForTheServer(t *testing.T) {
	addr := freeAddr(t)
	p, tries := newPatient()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/api", nil)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		resp *http.Response
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := p.RoundTrip(req)
		done <- result{resp, err}
	}()
	testutil.Eventually(t, "three refused dials", 30*time.Second, func() bool { return tries.Load() >= 3 })
	if !p.down.Load() {
		t.Fatal("the transport did not notice the server is down")
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s was taken meanwhile: %v", addr, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("RoundTrip: %v", r.err)
		}
		r.resp.Body.Close()
		if r.resp.StatusCode != http.StatusTeapot {
			t.Errorf("status = %d", r.resp.StatusCode)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("RoundTrip did not return after the server came up")
	}
	if p.down.Load() {
		t.Error("the transport still thinks the server is down")
	}
}

func TestPatientTransportGivesUp(t *testing.T) {
	addr := freeAddr(t)
	p, _ := newPatient()
	post, err := http.NewRequest(http.MethodPost, "http://"+addr+"/api", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.RoundTrip(post); !dialFailed(err) {
		t.Errorf("POST: err = %v, want the dial error at once", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	get, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/api", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.RoundTrip(get)
	if !dialFailed(err) || ctx.Err() == nil {
		t.Errorf("GET with a 200ms deadline: err = %v, deadline passed: %v; want the dial error once the deadline passed", err, ctx.Err() != nil)
	}
}

// serveStatuses serves the statuses in turn (the last one from then on) and
// counts the requests.
func serveStatuses(t *testing.T, l net.Listener, statuses ...int) *atomic.Int32 {
	t.Helper()
	var n atomic.Int32
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		i := int(n.Add(1)) - 1
		w.Header().Set("Retry-After", "5")
		w.WriteHeader(statuses[min(i, len(statuses)-1)])
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return &n
}

func TestPatientTransportWaitsForAStartingServer(t *testing.T) {
	tests := []struct {
		name       string
		outage     bool
		want       int
		wantServed int32
	}{
		{"503s right after an outage are retried", true, http.StatusOK, 3},
		{"a 503 without an outage is returned", false, http.StatusServiceUnavailable, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := freeAddr(t)
			p, _ := newPatient()
			if tt.outage {
				outage(t, p, addr)
			}
			l, err := net.Listen("tcp", addr)
			if err != nil {
				t.Skipf("port %s was taken meanwhile: %v", addr, err)
			}
			served := serveStatuses(t, l, http.StatusServiceUnavailable, http.StatusServiceUnavailable, http.StatusOK)
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/api", nil)
			if err != nil {
				t.Fatal(err)
			}
			begin := time.Now()
			resp, err := p.RoundTrip(req)
			took := time.Since(begin)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want || served.Load() != tt.wantServed {
				t.Errorf("status %d after %d requests; want %d after %d", resp.StatusCode, served.Load(), tt.want, tt.wantServed)
			}
			if took >= 5*time.Second {
				t.Errorf("took %s: the transport waited for the server's Retry-After (5s), want its own interval", took)
			}
		})
	}
}

// outage makes p see the server at addr down: a GET retries refused dials
// until p marks the server down, then the GET is cancelled.
func outage(t *testing.T, p *patientTransport, addr string) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	get, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/api", nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := p.RoundTrip(get)
		done <- err
	}()
	testutil.Eventually(t, "the transport to see the server down", 30*time.Second, p.down.Load)
	cancel()
	if err := <-done; !dialFailed(err) {
		t.Fatalf("GET to a closed port: err = %v", err)
	}
}

// roundTripFunc is an http.RoundTripper made of a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// A retry whose dial the request's deadline interrupts reports the dial
// error seen before, not the bare deadline: the caller learns why.
func TestPatientTransportDeadlineDuringRetry(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	var calls atomic.Int32
	p := &patientTransport{interval: time.Millisecond, logger: slog.New(slog.DiscardHandler),
		next: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if calls.Add(1) == 1 {
				return nil, refused
			}
			<-r.Context().Done() // the second dial outlasts the deadline
			return nil, r.Context().Err()
		})}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	get, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:1/api", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.RoundTrip(get); !errors.Is(err, refused) {
		t.Errorf("err = %v, want the refused dial", err)
	}
	if calls.Load() != 2 {
		t.Errorf("%d dials, want 2", calls.Load())
	}
}
