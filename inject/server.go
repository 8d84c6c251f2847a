package inject

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Path is where the API server posts AdmissionReviews (Istio's).
const Path = "/inject"

// Server is the webhook over HTTPS.
type Server struct {
	lis    net.Listener
	srv    *http.Server
	logger *slog.Logger
}

// NewServer listens on addr. getCertificate supplies the serving
// certificate on each handshake (so a renewed one is used without a
// restart).
func NewServer(addr string, cfg Config, getCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error), logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sidecar injection: %w", err)
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle(Path, Handler(cfg, logger))
	srv := &http.Server{
		Handler:           mux,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: getCertificate},
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	return &Server{lis: lis, srv: srv, logger: logger}, nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.lis.Addr() }

// Start serves until ctx ends, then shuts down within 5 s.
func (s *Server) Start(ctx context.Context) error {
	s.logger.Info("serving sidecar injection", "addr", s.lis.Addr().String(), "path", Path)
	errc := make(chan error, 1)
	go func() { errc <- s.srv.ServeTLS(s.lis, "", "") }()
	select {
	case err := <-errc:
		return fmt.Errorf("sidecar injection server: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(shutdown); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("sidecar injection server shutdown: %w", err)
	}
	return nil
}
