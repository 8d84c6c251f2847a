package kube

import (
	"context"
	"fmt"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"

	"github.com/librarymesh/controlplane/registry"
)

// secretSelector leaves out the Secrets that never hold a gateway
// credential and are many (as Istio's credential controller does).
var secretSelector = fields.AndSelectors(
	fields.OneTermNotEqualSelector("type", string(corev1.SecretTypeServiceAccountToken)),
	fields.OneTermNotEqualSelector("type", "helm.sh/release.v1"),
).String()

// addSecretInformers watches Secrets (for Gateway credentialName) in each
// watched namespace the control plane may list them in. Without the
// permission the rest still works: the source warns once, naming the fix,
// and gateways get no credentials.
func (s *Source) addSecretInformers(ctx context.Context) error {
	for _, sc := range s.scopes {
		ok, err := s.mayListSecrets(ctx, sc.ns)
		if err != nil {
			return err
		}
		if !ok {
			s.logger.Warn("kube source: not allowed to list and watch Secrets; Gateway credentialName certificates are not served (grant secrets get/list/watch, see deploy/base/clusterrole.yaml)",
				"namespace", displayNamespace(sc.ns))
			continue
		}
		f := informers.NewSharedInformerFactoryWithOptions(s.kube, s.cfg.Resync, informers.WithNamespace(sc.ns),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = secretSelector }))
		if err := s.addInformer(registry.KindSecret, true, sc.ns, f.Core().V1().Secrets().Informer()); err != nil {
			return err
		}
		s.starts = append(s.starts, f.Start)
	}
	return nil
}

// mayListSecrets asks the API server whether the source may list and
// watch Secrets in ns ("" for every namespace).
func (s *Source) mayListSecrets(ctx context.Context, ns string) (bool, error) {
	for _, verb := range []string{"list", "watch"} {
		r, err := s.kube.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: ns, Verb: verb, Resource: "secrets",
			}},
		}, metav1.CreateOptions{})
		if err != nil {
			return false, fmt.Errorf("kube source: ask whether Secrets may be %sed: %w", verb, err)
		}
		if !r.Status.Allowed {
			return false, nil
		}
	}
	return true, nil
}

func displayNamespace(ns string) string {
	if ns == "" {
		return "(all)"
	}
	return ns
}
