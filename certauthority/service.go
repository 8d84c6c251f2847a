package certauthority

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
)

// Service implements istio.v1.auth.IstioCertificateService.
type Service struct {
	securityv1alpha1.UnimplementedIstioCertificateServiceServer
	ca *CA
}

var _ securityv1alpha1.IstioCertificateServiceServer = (*Service)(nil)

// Service returns the gRPC service of this CA.
func (ca *CA) Service() *Service { return &Service{ca: ca} }

// Register adds istio.v1.auth.IstioCertificateService to a gRPC server (both ports).
func (ca *CA) Register(s grpc.ServiceRegistrar) {
	securityv1alpha1.RegisterIstioCertificateServiceServer(s, ca.Service())
}

// CreateCertificate signs the CSR for the caller's proven identity. validity_duration is in
// seconds (0: the default). Errors are gRPC statuses: Unauthenticated, InvalidArgument or
// ResourceExhausted (a rate limit, see Limits).
func (s *Service) CreateCertificate(ctx context.Context, req *securityv1alpha1.IstioCertificateRequest) (*securityv1alpha1.IstioCertificateResponse, error) {
	chain, c, err := s.create(ctx, req)
	if err != nil {
		r := asRefusal(err)
		s.ca.metrics.refusals.WithLabelValues(string(r.Reason)).Inc()
		if s.ca.refusalLog.allow() {
			s.ca.log.Info("certificate request refused", "reason", string(r.Reason), "code", r.Code.String(),
				"error", r.Message, "peer", peerAddr(ctx), "identity", c.id.String())
		}
		return nil, r
	}
	s.ca.metrics.issued.WithLabelValues(c.method).Inc()
	if s.ca.log.Enabled(ctx, slog.LevelDebug) {
		s.ca.log.Debug("certificate issued", "identity", c.id.String(), "auth", c.method, "peer", peerAddr(ctx))
	}
	return &securityv1alpha1.IstioCertificateResponse{CertChain: chain}, nil
}

func (s *Service) create(ctx context.Context, req *securityv1alpha1.IstioCertificateRequest) ([]string, caller, error) {
	if !s.ca.limits.allowGlobal(s.ca.cfg.Now()) {
		return nil, caller{}, s.ca.throttled(scopeGlobal, "the certificate authority is at its global rate limit (%g/s); retry later",
			s.ca.cfg.Limits.GlobalRate)
	}
	c, err := s.ca.authenticate(ctx)
	if err != nil {
		return nil, c, err
	}
	if !s.ca.limits.allowIdentity(c.id, s.ca.cfg.Now()) {
		return nil, c, s.ca.throttled(scopeIdentity, "%s is at its rate limit of %g certificate requests per second; retry later",
			c.id, s.ca.cfg.Limits.IdentityRate)
	}
	ttl, err := s.ca.requestedTTL(req.GetValidityDuration())
	if err != nil {
		return nil, c, err
	}
	csr, err := parseCSR([]byte(req.GetCsr()))
	if err != nil {
		return nil, c, err
	}
	if err := s.ca.consume(ctx, c); err != nil {
		return nil, c, err
	}
	chain, err := s.ca.signCSR(ctx, csr, c.id, ttl)
	if err == nil && c.cert != nil {
		s.ca.issued.replaced(c.cert)
	}
	return chain, c, err
}

// throttled counts a rate-limited call and returns its ResourceExhausted refusal.
func (ca *CA) throttled(scope, format string, args ...any) *Refusal {
	ca.metrics.throttled.WithLabelValues(scope).Inc()
	return refuse(codes.ResourceExhausted, ReasonRateLimited, format, args...)
}

func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

// requestedTTL converts validity_duration (seconds) without overflowing.
func (ca *CA) requestedTTL(seconds int64) (time.Duration, error) {
	if seconds > int64(ca.cfg.MaxCertTTL/time.Second) {
		return 0, invalidArgument(ReasonValidityInvalid, "requested validity %ds exceeds the maximum %s", seconds, ca.cfg.MaxCertTTL)
	}
	return ca.checkTTL(time.Duration(seconds) * time.Second)
}
