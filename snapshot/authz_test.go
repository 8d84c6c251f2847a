package snapshot

import (
	"path/filepath"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/librarymesh/controlplane/registry"
)

// TestAuthzFiltersValidate: the RBAC configs inside the filters' typed
// configs (which a Listener's ValidateAll does not open) pass ValidateAll.
func TestAuthzFiltersValidate(t *testing.T) {
	dir := filepath.Join("testdata", "authorization-policy")
	view, _ := loadMesh(t, filepath.Join(dir, "mesh.yaml"))
	b := NewBuilder(view, Options{})
	rbacs := 0
	for _, gp := range readProxies(t, filepath.Join(dir, "proxies.yaml")) {
		res, err := b.Build(mustProxy(t, gp.ID, gp.Metadata))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res.Listeners {
			for _, fc := range r.(*listenerv3.Listener).GetFilterChains() {
				for _, f := range fc.GetFilters() {
					rbacs += validateTyped(t, gp.ID, f.GetTypedConfig())
				}
			}
		}
	}
	if rbacs < 10 {
		t.Errorf("validated %d RBAC filters, want the case's (at least 10)", rbacs)
	}
}

// validateTyped unpacks a filter config (and an HCM's HTTP filters) and
// validates it; it returns how many RBAC filters it saw.
func validateTyped(t *testing.T, node string, a *anypb.Any) int {
	t.Helper()
	m, err := a.UnmarshalNew()
	if err != nil {
		t.Fatalf("%s: %v", node, err)
	}
	if err := m.(interface{ ValidateAll() error }).ValidateAll(); err != nil {
		t.Errorf("%s: %s: %v", node, a.GetTypeUrl(), err)
	}
	n := 0
	if hcm, ok := m.(*hcmv3.HttpConnectionManager); ok {
		for _, hf := range hcm.GetHttpFilters() {
			n += validateTyped(t, node, hf.GetTypedConfig())
		}
	}
	if proto.MessageName(m).Name() == "RBAC" {
		n++
	}
	return n
}

func TestAuthzSelection(t *testing.T) {
	pol := func(ns, name string, action registry.AuthzAction, sel map[string]string) *registry.AuthorizationPolicy {
		return &registry.AuthorizationPolicy{Namespace: ns, Name: name, Action: action, Selector: sel}
	}
	view := &testView{authz: []*registry.AuthorizationPolicy{
		pol("default", "ns-wide", registry.AuthzAllow, nil),
		pol("default", "other-app", registry.AuthzDeny, map[string]string{"app": "other"}),
		pol("istio-system", "mesh", registry.AuthzAudit, nil),
		pol("istio-system", "mesh-db", registry.AuthzCustom, map[string]string{"app": "db"}),
		pol("prod", "elsewhere", registry.AuthzDeny, nil),
	}}
	b := NewBuilder(view, Options{})
	got := b.authzFor(&registry.Workload{Namespace: "default", Labels: map[string]string{"app": "db"}})
	names := func(ps []*registry.AuthorizationPolicy) (out []string) {
		for _, p := range ps {
			out = append(out, p.Namespace+"/"+p.Name)
		}
		return out
	}
	if len(got.allow) != 1 || len(got.deny) != 0 || len(got.audit) != 1 || len(got.custom) != 1 {
		t.Errorf("allow %v deny %v audit %v custom %v", names(got.allow), names(got.deny), names(got.audit), names(got.custom))
	}
	rules := b.inboundRBAC(authzTarget{policies: got, port: 5432, tcp: true, where: "port 5432"})
	wantActions := []rbacv3.RBAC_Action{rbacv3.RBAC_DENY, rbacv3.RBAC_LOG, rbacv3.RBAC_ALLOW}
	if len(rules) != len(wantActions) {
		t.Fatalf("RBAC configs = %v", rules)
	}
	for i, r := range rules {
		if r.GetAction() != wantActions[i] {
			t.Errorf("RBAC %d action = %v, want %v (CUSTOM deny-all, AUDIT, DENY, ALLOW)", i, r.GetAction(), wantActions[i])
		}
		if err := r.ValidateAll(); err != nil {
			t.Error(err)
		}
	}
	// The ALLOW policy has no rules: it allows nothing (a never-matching policy).
	if p := rules[2].GetPolicies()["ns[default]-policy[ns-wide]-rule[0]"]; !proto.Equal(p, policyNever()) {
		t.Errorf("ALLOW without rules = %v, want a policy that never matches", p)
	}
	nsOnly := NewBuilder(&testView{authz: view.authz[:2]}, Options{})
	if none := nsOnly.inboundRBAC(authzTarget{policies: nsOnly.authzFor(&registry.Workload{Namespace: "test"})}); none != nil {
		t.Errorf("a workload no policy selects gets %v", none)
	}
}

func TestAuthzPrincipalMatchers(t *testing.T) {
	for _, tc := range []struct {
		attr, value string
		want        *rbacv3.Principal
	}{
		{registry.AttrSourcePrincipal, "cluster.local/ns/a/sa/b", authenticated(&matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "spiffe://cluster.local/ns/a/sa/b"}})},
		{registry.AttrSourcePrincipal, "cluster.local/ns/a/*", authenticated(&matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "spiffe://cluster.local/ns/a/"}})},
		{registry.AttrSourcePrincipal, "*/sa/b", authenticated(&matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: "/sa/b"}})},
		{registry.AttrSourcePrincipal, "*", authenticated(regexMatcher(".+"))},
		{registry.AttrSourceNamespace, "prod", authenticated(regexMatcher(`.*/ns/prod/.*`))},
		{registry.AttrSourceNamespace, "team.a*", authenticated(regexMatcher(`.*/ns/team\.a[^/]*/.*`))},
		{registry.AttrSourceNamespace, "*-prod", authenticated(regexMatcher(`.*/ns/[^/]*-prod/.*`))},
		{registry.AttrSourceIP, "fd00::/8", &rbacv3.Principal{Identifier: &rbacv3.Principal_DirectRemoteIp{
			DirectRemoteIp: &corev3.CidrRange{AddressPrefix: "fd00::", PrefixLen: wrapperspb.UInt32(8)}}}},
		{registry.AttrRemoteIP, "10.0.0.1", &rbacv3.Principal{Identifier: &rbacv3.Principal_RemoteIp{
			RemoteIp: &corev3.CidrRange{AddressPrefix: "10.0.0.1", PrefixLen: wrapperspb.UInt32(32)}}}},
	} {
		got := principalFor(registry.AuthzMatch{Attr: tc.attr}, tc.value)
		if diff := cmp.Diff(tc.want, got, protocmp.Transform()); diff != "" {
			t.Errorf("%s %q (-want +got):\n%s", tc.attr, tc.value, diff)
		}
	}
}
