package registry_test

import (
	"reflect"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"
	securityapi "istio.io/api/security/v1beta1"
	typeapi "istio.io/api/type/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	securityv1beta1 "istio.io/client-go/pkg/apis/security/v1beta1"

	"github.com/librarymesh/controlplane/registry"
)

func TestAuthorizationPolicyConverts(t *testing.T) {
	s := registry.NewStore(nil)
	ap := &securityv1.AuthorizationPolicy{ObjectMeta: meta("pg")}
	ap.Spec = securityapi.AuthorizationPolicy{
		Selector: &typeapi.WorkloadSelector{MatchLabels: map[string]string{"app": "pg"}},
		Rules: []*securityapi.Rule{{
			From: []*securityapi.Rule_From{{Source: &securityapi.Source{
				Principals: []string{"cluster.local/ns/default/sa/inventory"}, NotNamespaces: []string{"test*"},
				ServiceAccounts: []string{"default/orders"}, IpBlocks: []string{"10.0.0.0/8", "192.0.2.1"}}}},
			To:   []*securityapi.Rule_To{{Operation: &securityapi.Operation{Ports: []string{"5432"}, Methods: []string{"GET"}}}},
			When: []*securityapi.Condition{{Key: "request.headers[x-user]", Values: []string{"*"}, NotValues: []string{"bob"}}},
		}},
	}
	if ps := s.Upsert("kube", ap); len(ps) != 0 {
		t.Fatal(ps)
	}
	f := "spec.rules[0]."
	want := []*registry.AuthorizationPolicy{{Namespace: "default", Name: "pg", Selector: map[string]string{"app": "pg"},
		Action: registry.AuthzAllow, Rules: []registry.AuthzRule{{
			From: [][]registry.AuthzMatch{{
				{Attr: registry.AttrSourcePrincipal, Values: []string{"cluster.local/ns/default/sa/inventory"}, Field: f + "from[0].source.principals"},
				{Attr: registry.AttrSourceNamespace, Values: []string{"test*"}, Not: true, Field: f + "from[0].source.notNamespaces"},
				{Attr: registry.AttrSourcePrincipal, Values: []string{"*/ns/default/sa/orders"}, Field: f + "from[0].source.serviceAccounts"},
				{Attr: registry.AttrSourceIP, Values: []string{"10.0.0.0/8", "192.0.2.1"}, Field: f + "from[0].source.ipBlocks"},
			}},
			To: [][]registry.AuthzMatch{{
				{Attr: registry.AttrDestinationPort, Values: []string{"5432"}, Field: f + "to[0].operation.ports"},
				{Attr: registry.AttrMethod, Values: []string{"GET"}, Field: f + "to[0].operation.methods"},
			}},
			When: []registry.AuthzMatch{
				{Attr: registry.AttrHeader, Header: "x-user", Values: []string{"*"}, Field: f + "when[0].values"},
				{Attr: registry.AttrHeader, Header: "x-user", Values: []string{"bob"}, Not: true, Field: f + "when[0].notValues"},
			},
		}}}}
	if got := s.View().AuthorizationPolicies(); !reflect.DeepEqual(got, want) {
		t.Errorf("policies =\n%+v\nwant\n%+v", got, want)
	}
}

// TestAuthorizationPolicyProblems: every bad part is a problem naming its
// field; the policy stays in force with the rule marked fail-closed.
func TestAuthorizationPolicyProblems(t *testing.T) {
	tests := []struct {
		name     string
		spec     *securityapi.AuthorizationPolicy
		field    string
		reason   string
		unusable bool // the first rule is marked fail-closed
	}{
		{"JWT principals", &securityapi.AuthorizationPolicy{Rules: []*securityapi.Rule{{From: []*securityapi.Rule_From{{Source: &securityapi.Source{RequestPrincipals: []string{"*"}}}}}}},
			"spec.rules[0].from[0].source.requestPrincipals", registry.ReasonAuthzUnsupported, true},
		{"bad ip block", &securityapi.AuthorizationPolicy{Rules: []*securityapi.Rule{{From: []*securityapi.Rule_From{{Source: &securityapi.Source{IpBlocks: []string{"10.0.0.1", "10.0.0.300/8"}}}}}}},
			"spec.rules[0].from[0].source.ipBlocks[1]", registry.ReasonAuthzInvalidValue, true},
		{"bad port", &securityapi.AuthorizationPolicy{Rules: []*securityapi.Rule{{To: []*securityapi.Rule_To{{Operation: &securityapi.Operation{NotPorts: []string{"70000"}}}}}}},
			"spec.rules[0].to[0].operation.notPorts[0]", registry.ReasonAuthzInvalidValue, true},
		{"wildcard inside", &securityapi.AuthorizationPolicy{Rules: []*securityapi.Rule{{To: []*securityapi.Rule_To{{Operation: &securityapi.Operation{Paths: []string{"/a/*/b"}}}}}}},
			"spec.rules[0].to[0].operation.paths[0]", registry.ReasonAuthzInvalidValue, true},
		{"path template", &securityapi.AuthorizationPolicy{Rules: []*securityapi.Rule{{To: []*securityapi.Rule_To{{Operation: &securityapi.Operation{Paths: []string{"/a/{*}"}}}}}}},
			"spec.rules[0].to[0].operation.paths[0]", registry.ReasonAuthzInvalidValue, true},
		{"empty from", &securityapi.AuthorizationPolicy{Rules: []*securityapi.Rule{{From: []*securityapi.Rule_From{{}}}}},
			"spec.rules[0].from[0].source", registry.ReasonAuthzInvalidRule, true},
		{"unknown key", &securityapi.AuthorizationPolicy{Rules: []*securityapi.Rule{{When: []*securityapi.Condition{{Key: "source.color", Values: []string{"red"}}}}}},
			"spec.rules[0].when[0].key", registry.ReasonAuthzUnsupported, true},
		{"JWT claim", &securityapi.AuthorizationPolicy{Rules: []*securityapi.Rule{{When: []*securityapi.Condition{{Key: "request.auth.claims[iss]", Values: []string{"x"}}}}}},
			"spec.rules[0].when[0].key", registry.ReasonAuthzUnsupported, true},
		{"condition without values", &securityapi.AuthorizationPolicy{Rules: []*securityapi.Rule{{When: []*securityapi.Condition{{Key: "source.ip"}}}}},
			"spec.rules[0].when[0]", registry.ReasonAuthzInvalidRule, true},
		{"bad service account", &securityapi.AuthorizationPolicy{Rules: []*securityapi.Rule{{From: []*securityapi.Rule_From{{Source: &securityapi.Source{ServiceAccounts: []string{"inventory"}}}}}}},
			"spec.rules[0].from[0].source.serviceAccounts[0]", registry.ReasonAuthzInvalidValue, true},
		{"CUSTOM", &securityapi.AuthorizationPolicy{Action: securityapi.AuthorizationPolicy_CUSTOM,
			ActionDetail: &securityapi.AuthorizationPolicy_Provider{Provider: &securityapi.AuthorizationPolicy_ExtensionProvider{Name: "opa"}}},
			"spec.provider", registry.ReasonAuthzUnsupported, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := registry.NewStore(nil)
			ap := &securityv1beta1.AuthorizationPolicy{ObjectMeta: meta("p")}
			proto.Merge(&ap.Spec, tc.spec)
			ps := s.Upsert("kube", ap)
			if !hasProblem(ps, tc.field, tc.reason) {
				t.Fatalf("problems = %v, want %s at %s", ps, tc.reason, tc.field)
			}
			if ps[0].Object != "AuthorizationPolicy default/p" {
				t.Errorf("problem names %q", ps[0].Object)
			}
			got := s.View().AuthorizationPolicies()
			if len(got) != 1 {
				t.Fatalf("the policy is not in force: %v", got)
			}
			if len(got[0].Rules) > 0 && (len(got[0].Rules[0].Unusable) > 0) != tc.unusable {
				t.Errorf("rule = %+v, want unusable %v", got[0].Rules[0], tc.unusable)
			}
			if tc.unusable && !slices.ContainsFunc(got[0].Rules[0].Unusable, func(f string) bool { return f == tc.field }) {
				t.Errorf("unusable = %v, want %s", got[0].Rules[0].Unusable, tc.field)
			}
		})
	}
}

func TestAuthorizationPolicyTargetRefAppliesToNoSidecar(t *testing.T) {
	s := registry.NewStore(nil)
	ap := &securityv1.AuthorizationPolicy{ObjectMeta: meta("gw")}
	ap.Spec.TargetRefs = []*typeapi.PolicyTargetReference{{Kind: "Gateway", Name: "gw"}}
	if ps := s.Upsert("kube", ap); !hasProblem(ps, "spec.targetRefs", registry.ReasonAuthzUnsupported) {
		t.Errorf("problems = %v", ps)
	}
	if got := s.View().AuthorizationPolicies(); len(got) != 0 {
		t.Errorf("policies = %v, want none", got)
	}
}

// TestAuthorizationPolicyChange: a new, changed or deleted policy is a
// policy change (every proxy's inbound side is rebuilt).
func TestAuthorizationPolicyChange(t *testing.T) {
	s := registry.NewStore(nil)
	ap := &securityv1.AuthorizationPolicy{ObjectMeta: meta("p")}
	ap.Spec.Action = securityapi.AuthorizationPolicy_DENY
	steps := []func(){
		func() { s.Upsert("kube", ap) },
		func() { ap.Spec.Action = securityapi.AuthorizationPolicy_ALLOW; s.Upsert("kube", ap) },
		func() { s.Delete("kube", registry.KindAuthorizationPolicy, "default", "p") },
	}
	for i, step := range steps {
		rev := s.View().Revision()
		step()
		ch := s.ChangesSince(rev)
		if len(ch) != 1 || !ch[0].Policy {
			t.Errorf("step %d: changes = %+v, want one policy change", i, ch)
		}
	}
}
