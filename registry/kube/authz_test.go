package kube_test

import (
	"testing"

	securityapi "istio.io/api/security/v1beta1"
	typeapi "istio.io/api/type/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	securityv1beta1 "istio.io/client-go/pkg/apis/security/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/librarymesh/controlplane/registry"
)

// AuthorizationPolicies written as v1 and as v1beta1 reach the store (both
// arrive through the v1 informer), and a deleted one leaves it.
func TestAuthorizationPoliciesReachTheStore(t *testing.T) {
	e := env.Need(t)
	ns := newNamespace(t, e)
	f := startSource(t, e, ns)
	ctx := t.Context()
	allow := &securityv1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pg"},
		Spec: securityapi.AuthorizationPolicy{
			Selector: &typeapi.WorkloadSelector{MatchLabels: map[string]string{"app": "pg"}},
			Rules: []*securityapi.Rule{{From: []*securityapi.Rule_From{{Source: &securityapi.Source{
				Principals: []string{"cluster.local/ns/default/sa/inventory"}}}}}}}}
	if _, err := e.Istio.SecurityV1().AuthorizationPolicies(ns).Create(ctx, allow, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deny := &securityv1beta1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "deny"},
		Spec: securityapi.AuthorizationPolicy{Action: securityapi.AuthorizationPolicy_DENY,
			Rules: []*securityapi.Rule{{To: []*securityapi.Rule_To{{Operation: &securityapi.Operation{Paths: []string{"/admin*"}}}}}}}}
	if _, err := e.Istio.SecurityV1beta1().AuthorizationPolicies(ns).Create(ctx, deny, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	v := f.waitView(t, "both policies", func(v registry.View) bool { return len(v.AuthorizationPolicies()) == 2 })
	got := v.AuthorizationPolicies()
	if got[0].Name != "deny" || got[0].Action != registry.AuthzDeny || got[0].Rules[0].To[0][0].Values[0] != "/admin*" {
		t.Errorf("DENY policy = %+v", got[0])
	}
	if got[1].Name != "pg" || got[1].Action != registry.AuthzAllow || got[1].Selector["app"] != "pg" ||
		got[1].Rules[0].From[0][0].Values[0] != "cluster.local/ns/default/sa/inventory" {
		t.Errorf("ALLOW policy = %+v", got[1])
	}
	if err := e.Istio.SecurityV1().AuthorizationPolicies(ns).Delete(ctx, "deny", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitView(t, "DENY policy deleted", func(v registry.View) bool { return len(v.AuthorizationPolicies()) == 1 })
}
