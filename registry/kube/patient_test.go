package kube

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
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

func newPatient() *patientTransport {
	return &patientTransport{next: &http.Transport{}, interval: 50 * time.Millisecond, logger: slog.New(slog.DiscardHandler)}
}

func TestPatientTransportWaitsForTheServer(t *testing.T) {
	addr := freeAddr(t)
	p := newPatient()
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
	time.Sleep(300 * time.Millisecond) // several refused dials
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
	p := newPatient()
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
	begin := time.Now()
	_, err = p.RoundTrip(get)
	if !dialFailed(err) || time.Since(begin) < 150*time.Millisecond {
		t.Errorf("GET with a 200ms deadline: err = %v after %s, want the dial error after the deadline", err, time.Since(begin))
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
			p := newPatient()
			if tt.outage {
				get, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/api", nil)
				if err != nil {
					t.Fatal(err)
				}
				// Long enough for a refused dial on a loaded machine; the transport
				// retries until the context ends, so this is also how long it takes.
				ctx, cancel := context.WithTimeout(t.Context(), time.Second)
				defer cancel()
				if _, err := p.RoundTrip(get.WithContext(ctx)); !dialFailed(err) {
					t.Fatalf("GET to a closed port: err = %v", err)
				}
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
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want || served.Load() != tt.wantServed {
				t.Errorf("status %d after %d requests; want %d after %d", resp.StatusCode, served.Load(), tt.want, tt.wantServed)
			}
			if took := time.Since(begin); took > time.Second {
				t.Errorf("took %s, want about two intervals (the server's Retry-After is 5s)", took)
			}
		})
	}
}
