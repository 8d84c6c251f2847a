package certauthority

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Reason names why a request was refused; it is the metric label.
type Reason string

// Refusal reasons.
const (
	ReasonNoCredential    Reason = "no_credential"
	ReasonBadClientCert   Reason = "bad_client_cert"
	ReasonBadToken        Reason = "bad_token"
	ReasonExpiredToken    Reason = "expired_token"
	ReasonWrongAudience   Reason = "wrong_audience"
	ReasonTokenReused     Reason = "token_reused"
	ReasonPlaintextToken  Reason = "token_over_plaintext"
	ReasonRateLimited     Reason = "rate_limited"
	ReasonCSRUnparseable  Reason = "csr_unparseable"
	ReasonCSRBadSignature Reason = "csr_bad_signature"
	ReasonWeakKey         Reason = "weak_key"
	ReasonValidityInvalid Reason = "validity_out_of_range"
	ReasonInternal        Reason = "internal"
)

// Refusal is a request the CA turned down. It carries a gRPC code (GRPCStatus), so it can
// be returned from a gRPC handler as is.
type Refusal struct {
	Reason  Reason
	Code    codes.Code
	Message string
}

func (r *Refusal) Error() string { return r.Message }

// GRPCStatus makes status.FromError see the refusal's code and message.
func (r *Refusal) GRPCStatus() *status.Status { return status.New(r.Code, r.Message) }

// NewRefusal builds a refusal; Kubernetes-facing helpers (TokenReviewer) use it.
func NewRefusal(code codes.Code, reason Reason, format string, args ...any) *Refusal {
	return refuse(code, reason, format, args...)
}

func refuse(code codes.Code, reason Reason, format string, args ...any) *Refusal {
	return &Refusal{Reason: reason, Code: code, Message: fmt.Sprintf(format, args...)}
}

func unauthenticated(reason Reason, format string, args ...any) *Refusal {
	return refuse(codes.Unauthenticated, reason, format, args...)
}

func invalidArgument(reason Reason, format string, args ...any) *Refusal {
	return refuse(codes.InvalidArgument, reason, format, args...)
}

// asRefusal turns any error into a Refusal; unknown errors become Internal.
func asRefusal(err error) *Refusal {
	if r, ok := errors.AsType[*Refusal](err); ok {
		return r
	}
	return refuse(codes.Internal, ReasonInternal, "certificate authority: %v", err)
}
