package kube

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/librarymesh/controlplane/certauthority"
	"google.golang.org/grpc/codes"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TokenReviewer checks service account tokens with the API server's TokenReview.
// The control plane's service account needs RBAC to create tokenreviews.
type TokenReviewer struct {
	Client kubernetes.Interface
	// Audience the token must carry (default certauthority.TokenAudience, istio-ca).
	Audience string
}

var _ certauthority.TokenReviewer = TokenReviewer{}

// Review implements certauthority.TokenReviewer.
func (r TokenReviewer) Review(ctx context.Context, token string) (certauthority.Identity, error) {
	aud := r.Audience
	if aud == "" {
		aud = certauthority.TokenAudience
	}
	review := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: []string{aud}}}
	res, err := r.Client.AuthenticationV1().TokenReviews().Create(ctx, review, metav1.CreateOptions{})
	if err != nil {
		return certauthority.Identity{}, certauthority.NewRefusal(codes.Unavailable, certauthority.ReasonInternal,
			"token review against the Kubernetes API server failed: %v", err)
	}
	st := res.Status
	if !st.Authenticated {
		reason := certauthority.ReasonBadToken
		if strings.Contains(st.Error, "audience") {
			reason = certauthority.ReasonWrongAudience
		}
		return certauthority.Identity{}, certauthority.NewRefusal(codes.Unauthenticated, reason,
			"Kubernetes token rejected (audience %s): %s", aud, st.Error)
	}
	// The API server names the audiences it checked the token against; an answer without
	// ours (also an empty one, from an authenticator that ignores audiences) does not
	// prove the token was meant for this CA.
	if !slices.Contains(st.Audiences, aud) {
		return certauthority.Identity{}, certauthority.NewRefusal(codes.Unauthenticated, certauthority.ReasonWrongAudience,
			"Kubernetes token review did not confirm audience %s (the API server returned audiences %v)", aud, st.Audiences)
	}
	id, err := certauthority.IdentityFromServiceAccountUser(st.User.Username)
	if err != nil {
		return certauthority.Identity{}, certauthority.NewRefusal(codes.Unauthenticated, certauthority.ReasonBadToken,
			"Kubernetes token: %v", err)
	}
	return id, nil
}

// String names the reviewer in logs.
func (r TokenReviewer) String() string { return fmt.Sprintf("TokenReview(audience %q)", r.Audience) }
