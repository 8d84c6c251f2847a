package kube

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// DefaultSecretAccessTTL is how long SecretAccess keeps an answer.
const DefaultSecretAccessTTL = time.Minute

// SecretAccess answers whether a service account may read the Secrets of
// a namespace by asking the API server with a SubjectAccessReview (verb
// list on secrets, as Istio's SDS server asks for gateway credentials). It
// keeps each answer, yes or no, for a TTL; a failure to ask is not kept.
type SecretAccess struct {
	client kubernetes.Interface
	ttl    time.Duration
	now    func() time.Time

	mu      sync.Mutex
	answers map[accessKey]accessAnswer
}

type accessKey struct{ namespace, serviceAccount, secretNamespace string }

type accessAnswer struct {
	err     error // nil: allowed
	expires time.Time
}

// NewSecretAccess makes a SecretAccess that asks the API server of cfg;
// ttl 0 means DefaultSecretAccessTTL.
func NewSecretAccess(cfg *rest.Config, ttl time.Duration) (*SecretAccess, error) {
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("secret access: kubernetes client: %w", err)
	}
	if ttl <= 0 {
		ttl = DefaultSecretAccessTTL
	}
	return &SecretAccess{client: client, ttl: ttl, now: time.Now, answers: map[accessKey]accessAnswer{}}, nil
}

// ErrSecretAccessDenied marks a refusal by the API server.
var ErrSecretAccessDenied = errors.New("may not list secrets")

// MayReadSecrets returns nil when service account namespace/serviceAccount
// may list Secrets in secretNamespace, an error wrapping
// ErrSecretAccessDenied (with the API server's reason) when it may not,
// or the error of asking.
func (a *SecretAccess) MayReadSecrets(ctx context.Context, namespace, serviceAccount, secretNamespace string) error {
	k := accessKey{namespace, serviceAccount, secretNamespace}
	a.mu.Lock()
	ans, ok := a.answers[k]
	a.mu.Unlock()
	if ok && a.now().Before(ans.expires) {
		return ans.err
	}
	asked, err := a.ask(ctx, k)
	if !asked {
		return err
	}
	a.mu.Lock()
	a.answers[k] = accessAnswer{err: err, expires: a.now().Add(a.ttl)}
	a.mu.Unlock()
	return err
}

// ask sends the SubjectAccessReview; asked is false when sending failed
// (err says why), else err is the answer (nil: allowed).
func (a *SecretAccess) ask(ctx context.Context, k accessKey) (asked bool, err error) {
	user := "system:serviceaccount:" + k.namespace + ":" + k.serviceAccount
	r, err := a.client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
		Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   user,
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + k.namespace, "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: k.secretNamespace, Verb: "list", Resource: "secrets",
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return false, fmt.Errorf("SubjectAccessReview for %s: %w", user, err)
	}
	if !r.Status.Allowed {
		reason := r.Status.Reason
		if reason == "" {
			reason = "no RBAC rule allows it"
		}
		return true, fmt.Errorf("%w in namespace %s: %s", ErrSecretAccessDenied, k.secretNamespace, reason)
	}
	return true, nil
}
