package snapshot

import (
	"fmt"
	"maps"
	"slices"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rbacnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"

	"github.com/librarymesh/controlplane/registry"
)

// Authorization follows Istio: the policies that select a workload are its
// namespace's without a selector, its namespace's whose selector matches
// its labels, and the root namespace's (mesh-wide without a selector, or
// selecting by labels in every namespace). They are enforced in Istio's
// order, one RBAC filter per action: CUSTOM (no extension providers here,
// so as Istio does for a provider it cannot find, a deny-all), AUDIT (LOG,
// enforces nothing), DENY, then ALLOW: when any ALLOW policy selects the
// workload, a request must match one of their rules.

// ReasonHTTPFieldOnTCPPort is the problem of a rule with HTTP-only parts
// (hosts, methods, paths, request headers) that selects a TCP port.
const ReasonHTTPFieldOnTCPPort = "HTTPFieldOnTCPPort"

// ReasonUnmatchableHeader is the problem of a rule matching a header
// grpc-go's RBAC refuses (:scheme, grpc-*) on a proxyless gRPC server.
const ReasonUnmatchableHeader = "UnmatchableHeader"

// workloadAuthz is what authorization applies to one workload, by action.
type workloadAuthz struct {
	custom, audit, deny, allow []*registry.AuthorizationPolicy
}

func (a workloadAuthz) empty() bool {
	return len(a.custom)+len(a.audit)+len(a.deny)+len(a.allow) == 0
}

// authzFor returns the policies that select w, sorted by namespace and name.
func (b *Builder) authzFor(w *registry.Workload) workloadAuthz {
	var out workloadAuthz
	for _, ap := range b.view.AuthorizationPolicies() {
		if ap.Namespace != w.Namespace && ap.Namespace != b.opts.RootNamespace {
			continue
		}
		if ap.Selector != nil && !selects(ap.Selector, w.Labels) {
			continue
		}
		switch ap.Action {
		case registry.AuthzCustom:
			out.custom = append(out.custom, ap)
		case registry.AuthzAudit:
			out.audit = append(out.audit, ap)
		case registry.AuthzDeny:
			out.deny = append(out.deny, ap)
		default:
			out.allow = append(out.allow, ap)
		}
	}
	return out
}

// authzTarget is what the RBAC of one inbound port is built for.
type authzTarget struct {
	policies  workloadAuthz
	port      uint32 // 0 for a catch-all chain (no problems reported)
	tcp       bool   // no HTTP attributes
	proxyless bool   // grpc-go's RBAC rules apply (no grpc- headers)
	where     string // "port 5432 (tcp) of postgres-1-vm.default.svc.cluster.local", for problems
}

// inboundRBAC returns the RBAC configs of an inbound port, in the order
// they are enforced; none when no policy selects the workload.
func (b *Builder) inboundRBAC(t authzTarget) []*rbacv3.RBAC {
	if t.policies.empty() {
		return nil
	}
	var out []*rbacv3.RBAC
	if len(t.policies.custom) > 0 {
		out = append(out, customDenyAll(t.policies.custom))
	}
	for _, set := range []struct {
		action   rbacv3.RBAC_Action
		policies []*registry.AuthorizationPolicy
	}{
		{rbacv3.RBAC_LOG, t.policies.audit}, {rbacv3.RBAC_DENY, t.policies.deny}, {rbacv3.RBAC_ALLOW, t.policies.allow},
	} {
		if len(set.policies) == 0 {
			continue
		}
		rules := &rbacv3.RBAC{Action: set.action, Policies: map[string]*rbacv3.Policy{}}
		for _, ap := range set.policies {
			maps.Copy(rules.Policies, b.rbacPolicies(ap, t))
		}
		out = append(out, rules)
	}
	return out
}

// customDenyAll is what Istio enforces for CUSTOM policies whose provider
// it cannot find: deny every request.
func customDenyAll(custom []*registry.AuthorizationPolicy) *rbacv3.RBAC {
	rules := &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: map[string]*rbacv3.Policy{}}
	for _, ap := range custom {
		rules.Policies[rbacPolicyName(ap, 0)+"-custom-unsupported"] = &rbacv3.Policy{
			Permissions: []*rbacv3.Permission{permissionAny()}, Principals: []*rbacv3.Principal{principalAny()},
		}
	}
	return rules
}

// rbacPolicyName is Istio's name of a rule's RBAC policy.
func rbacPolicyName(ap *registry.AuthorizationPolicy, rule int) string {
	return fmt.Sprintf("ns[%s]-policy[%s]-rule[%d]", ap.Namespace, ap.Name, rule)
}

// rbacPolicies turns a policy's rules into RBAC policies. A policy without
// rules gets one that never matches (so an ALLOW policy without rules
// denies everything, as in Istio). A rule that cannot be enforced as
// written fails closed: ALLOW drops it, DENY and AUDIT drop the parts.
func (b *Builder) rbacPolicies(ap *registry.AuthorizationPolicy, t authzTarget) map[string]*rbacv3.Policy {
	out := map[string]*rbacv3.Policy{}
	if len(ap.Rules) == 0 {
		out[rbacPolicyName(ap, 0)] = policyNever()
		return out
	}
	for i, rule := range ap.Rules {
		if ap.Action == registry.AuthzAllow && len(rule.Unusable) > 0 {
			continue // reported by the registry
		}
		if r := b.enforceableRule(ap, rule, t); r != nil {
			out[rbacPolicyName(ap, i)] = rbacPolicy(r)
		}
	}
	return out
}

// enforceableRule drops the parts of a rule the target cannot enforce (HTTP
// attributes on a TCP port, headers grpc-go refuses): an ALLOW rule with
// such parts is dropped (nil), other actions keep the rest. Each dropped
// field is a problem.
func (b *Builder) enforceableRule(ap *registry.AuthorizationPolicy, rule registry.AuthzRule, t authzTarget) *registry.AuthzRule {
	var dropped []string
	keep := func(ms []registry.AuthzMatch) []registry.AuthzMatch {
		return slices.DeleteFunc(slices.Clone(ms), func(m registry.AuthzMatch) bool {
			if enforceable(m, t) {
				return false
			}
			dropped = append(dropped, m.Field)
			return true
		})
	}
	out := registry.AuthzRule{When: keep(rule.When)}
	for _, f := range rule.From {
		out.From = append(out.From, keep(f))
	}
	for _, to := range rule.To {
		out.To = append(out.To, keep(to))
	}
	for _, field := range dropped {
		b.authzProblem(ap, field, t)
	}
	if len(dropped) > 0 && ap.Action == registry.AuthzAllow {
		return nil
	}
	return &out
}

// enforceable reports whether the target can enforce a match.
func enforceable(m registry.AuthzMatch, t authzTarget) bool {
	if t.tcp && registry.HTTPOnly(m.Attr) {
		return false
	}
	return !t.proxyless || m.Attr != registry.AttrHeader || grpcHeaderAllowed(m.Header)
}

// authzProblem reports a field of a policy not enforced on a port.
func (b *Builder) authzProblem(ap *registry.AuthorizationPolicy, field string, t authzTarget) {
	if t.port == 0 {
		return // a catch-all chain: the port's own chain reports it
	}
	how := "the rule is dropped (an ALLOW rule that cannot be checked allows nothing)"
	if ap.Action != registry.AuthzAllow {
		how = "the rule applies without it (it matches more)"
	}
	what, reason := "HTTP-only, but "+t.where+" is TCP", ReasonHTTPFieldOnTCPPort
	if !t.tcp {
		what, reason = "names a header grpc-go does not let RBAC match (:scheme, grpc-*), on "+t.where, ReasonUnmatchableHeader
	}
	b.problem(registry.Problem{Source: ap.Namespace + "/" + ap.Name, Object: registry.KindAuthorizationPolicy + " " + ap.Namespace + "/" + ap.Name,
		Field: field, Reason: reason, Message: fmt.Sprintf("%s; enforced fail-closed: %s", what, how)})
}

// Envoy's RBAC filter names (grpc-go knows the HTTP one by its config type).
const (
	networkRBACFilterName = "envoy.filters.network.rbac"
	httpRBACFilterName    = "envoy.filters.http.rbac"
	// rbacStatPrefix is Istio's stat prefix of the network RBAC filter.
	rbacStatPrefix = "tcp."
)

// NetworkRBACFilter enforces rules on a TCP connection (before tcp_proxy).
func NetworkRBACFilter(rules *rbacv3.RBAC) *listenerv3.Filter {
	return &listenerv3.Filter{
		Name: networkRBACFilterName,
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(&rbacnetv3.RBAC{
			Rules: rules, StatPrefix: rbacStatPrefix,
		})},
	}
}

// HTTPRBACFilter enforces rules on each HTTP request (before the router).
func HTTPRBACFilter(rules *rbacv3.RBAC) *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{
		Name:       httpRBACFilterName,
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&rbachttpv3.RBAC{Rules: rules})},
	}
}

// networkRBACFilters are the network filters of a TCP port's RBAC configs.
func networkRBACFilters(rules []*rbacv3.RBAC) []*listenerv3.Filter {
	var out []*listenerv3.Filter
	for _, r := range rules {
		out = append(out, NetworkRBACFilter(r))
	}
	return out
}

// httpRBACFilters are the HTTP filters of an HTTP port's RBAC configs.
func httpRBACFilters(rules []*rbacv3.RBAC) []*hcmv3.HttpFilter {
	var out []*hcmv3.HttpFilter
	for _, r := range rules {
		out = append(out, HTTPRBACFilter(r))
	}
	return out
}
