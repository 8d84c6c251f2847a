package registry

import (
	"fmt"
	"maps"
	"net/netip"
	"strconv"
	"strings"

	securityapi "istio.io/api/security/v1beta1"
)

// Problem reasons of AuthorizationPolicies. None rejects the policy: a rule
// that cannot be used as written is enforced fail-closed (AuthzRule.Unusable),
// so a typo never opens a workload the policy was meant to close.
const (
	ReasonAuthzUnsupported  = "UnsupportedAuthorization" // CUSTOM, JWT, targetRef, experimental keys
	ReasonAuthzInvalidValue = "InvalidAuthorizationValue"
	ReasonAuthzInvalidRule  = "InvalidAuthorizationRule"
)

// nonBlocking are problem reasons that leave the object in force.
var nonBlocking = map[string]bool{
	ReasonAuthzUnsupported: true, ReasonAuthzInvalidValue: true, ReasonAuthzInvalidRule: true,
	ReasonFailoverWithoutOutlierDetection: true,
}

// authorizationPolicy converts an AuthorizationPolicy (v1 and v1beta1 share
// the spec).
func (c *converter) authorizationPolicy(key ObjectKey, ap *securityapi.AuthorizationPolicy, p *problems) *record {
	if ap.GetTargetRef() != nil || len(ap.GetTargetRefs()) > 0 {
		p.add("spec.targetRefs", ReasonAuthzUnsupported,
			"targetRef(s) attach a policy to gateways and waypoints, which this control plane does not serve; as in Istio, the policy applies to no sidecar")
		return &record{}
	}
	out := &AuthorizationPolicy{Namespace: key.Namespace, Name: key.Name, Action: authzAction(ap.GetAction())}
	if sel := ap.GetSelector().GetMatchLabels(); len(sel) > 0 {
		out.Selector = maps.Clone(sel)
	}
	switch {
	case out.Action == AuthzCustom:
		out.Provider = ap.GetProvider().GetName()
		p.add("spec.provider", ReasonAuthzUnsupported,
			"CUSTOM needs extension provider %q, which this control plane does not have; as Istio does for a provider it cannot find, the selected workloads deny every request",
			out.Provider)
	case ap.GetProvider() != nil:
		p.add("spec.provider", ReasonAuthzInvalidRule, "provider is only used with action CUSTOM; ignored")
	}
	for i, r := range ap.GetRules() {
		out.Rules = append(out.Rules, authzRule(fmt.Sprintf("spec.rules[%d]", i), r, p))
	}
	return &record{Policies: []*policyRow{{Namespace: key.Namespace, Authz: out}}}
}

func authzAction(a securityapi.AuthorizationPolicy_Action) AuthzAction {
	switch a {
	case securityapi.AuthorizationPolicy_DENY:
		return AuthzDeny
	case securityapi.AuthorizationPolicy_AUDIT:
		return AuthzAudit
	case securityapi.AuthorizationPolicy_CUSTOM:
		return AuthzCustom
	}
	return AuthzAllow
}

// ruleBuilder collects one rule's matches and what of it cannot be used.
type ruleBuilder struct {
	p    *problems
	rule AuthzRule
}

// unusable records a field of the rule that is left out (fail-closed).
func (b *ruleBuilder) unusable(field, reason, format string, args ...any) {
	b.p.add(field, reason, format, args...)
	b.rule.Unusable = append(b.rule.Unusable, field)
}

func authzRule(field string, r *securityapi.Rule, p *problems) AuthzRule {
	b := &ruleBuilder{p: p}
	if r == nil {
		b.unusable(field, ReasonAuthzInvalidRule, "rule is null")
		return b.rule
	}
	for i, from := range r.GetFrom() {
		f := fmt.Sprintf("%s.from[%d].source", field, i)
		if from.GetSource() == nil {
			b.unusable(f, ReasonAuthzInvalidRule, "from needs a source")
		}
		b.rule.From = append(b.rule.From, b.source(f, from.GetSource()))
	}
	for i, to := range r.GetTo() {
		f := fmt.Sprintf("%s.to[%d].operation", field, i)
		if to.GetOperation() == nil {
			b.unusable(f, ReasonAuthzInvalidRule, "to needs an operation")
		}
		b.rule.To = append(b.rule.To, b.operation(f, to.GetOperation()))
	}
	for i, c := range r.GetWhen() {
		if m, ok := b.condition(fmt.Sprintf("%s.when[%d]", field, i), c); ok {
			b.rule.When = append(b.rule.When, m...)
		}
	}
	return b.rule
}

// valueField is one list field of a source or operation.
type valueField struct {
	name   string
	attr   string
	values []string
	not    bool
	check  func(string) error
	rename func(string) string // how a value becomes the attribute's value
}

func (b *ruleBuilder) source(field string, s *securityapi.Source) []AuthzMatch {
	for _, jwt := range []struct {
		name   string
		values []string
	}{{"requestPrincipals", s.GetRequestPrincipals()}, {"notRequestPrincipals", s.GetNotRequestPrincipals()}} {
		if len(jwt.values) > 0 {
			b.unusable(field+"."+jwt.name, ReasonAuthzUnsupported,
				"request principals come from JWTs, which this control plane does not validate (no RequestAuthentication); enforced fail-closed: an ALLOW rule is dropped, a DENY rule applies without it")
		}
	}
	trustDomain := func(td string) string { return td + "/*" }
	account := func(v string) string { ns, sa, _ := strings.Cut(v, "/"); return "*/ns/" + ns + "/sa/" + sa }
	return b.fields(field, []valueField{
		{name: "principals", attr: AttrSourcePrincipal, values: s.GetPrincipals(), check: checkGlob},
		{name: "notPrincipals", attr: AttrSourcePrincipal, values: s.GetNotPrincipals(), not: true, check: checkGlob},
		{name: "namespaces", attr: AttrSourceNamespace, values: s.GetNamespaces(), check: checkGlob},
		{name: "notNamespaces", attr: AttrSourceNamespace, values: s.GetNotNamespaces(), not: true, check: checkGlob},
		{name: "serviceAccounts", attr: AttrSourcePrincipal, values: s.GetServiceAccounts(), check: checkServiceAccount, rename: account},
		{name: "notServiceAccounts", attr: AttrSourcePrincipal, values: s.GetNotServiceAccounts(), not: true, check: checkServiceAccount, rename: account},
		{name: "trustDomains", attr: AttrSourcePrincipal, values: s.GetTrustDomains(), check: checkTrustDomain, rename: trustDomain},
		{name: "notTrustDomains", attr: AttrSourcePrincipal, values: s.GetNotTrustDomains(), not: true, check: checkTrustDomain, rename: trustDomain},
		{name: "ipBlocks", attr: AttrSourceIP, values: s.GetIpBlocks(), check: checkCIDR},
		{name: "notIpBlocks", attr: AttrSourceIP, values: s.GetNotIpBlocks(), not: true, check: checkCIDR},
		{name: "remoteIpBlocks", attr: AttrRemoteIP, values: s.GetRemoteIpBlocks(), check: checkCIDR},
		{name: "notRemoteIpBlocks", attr: AttrRemoteIP, values: s.GetNotRemoteIpBlocks(), not: true, check: checkCIDR},
	})
}

func (b *ruleBuilder) operation(field string, o *securityapi.Operation) []AuthzMatch {
	return b.fields(field, []valueField{
		{name: "hosts", attr: AttrHost, values: o.GetHosts(), check: checkGlob},
		{name: "notHosts", attr: AttrHost, values: o.GetNotHosts(), not: true, check: checkGlob},
		{name: "ports", attr: AttrDestinationPort, values: o.GetPorts(), check: checkPort},
		{name: "notPorts", attr: AttrDestinationPort, values: o.GetNotPorts(), not: true, check: checkPort},
		{name: "methods", attr: AttrMethod, values: o.GetMethods(), check: checkGlob},
		{name: "notMethods", attr: AttrMethod, values: o.GetNotMethods(), not: true, check: checkGlob},
		{name: "paths", attr: AttrPath, values: o.GetPaths(), check: checkPath},
		{name: "notPaths", attr: AttrPath, values: o.GetNotPaths(), not: true, check: checkPath},
	})
}

// fields turns the non-empty list fields into matches; a field with a bad
// value is left out as a whole (fail-closed, see AuthzRule.Unusable).
func (b *ruleBuilder) fields(field string, fs []valueField) []AuthzMatch {
	var out []AuthzMatch
	for _, f := range fs {
		if len(f.values) == 0 {
			continue
		}
		name := field + "." + f.name
		if m, ok := b.match(name, f); ok {
			out = append(out, m)
		}
	}
	return out
}

// match checks a field's values and makes its match.
func (b *ruleBuilder) match(name string, f valueField) (AuthzMatch, bool) {
	m := AuthzMatch{Attr: f.attr, Not: f.not, Field: name}
	for j, v := range f.values {
		if err := f.check(v); err != nil {
			b.unusable(fmt.Sprintf("%s[%d]", name, j), ReasonAuthzInvalidValue,
				"%v; the field is enforced fail-closed: an ALLOW rule is dropped, a DENY rule applies without it", err)
			return AuthzMatch{}, false
		}
		if f.rename != nil {
			v = f.rename(v)
		}
		m.Values = append(m.Values, v)
	}
	return m, true
}

// conditionKeys are the `when` keys this control plane enforces, with the
// check of their values.
var conditionKeys = map[string]func(string) error{
	AttrSourceIP: checkCIDR, AttrRemoteIP: checkCIDR, AttrDestinationIP: checkCIDR,
	AttrSourceNamespace: checkGlob, AttrSourcePrincipal: checkGlob,
	AttrDestinationPort: checkPort, AttrSNI: checkGlob,
}

// condition converts a `when` condition into its match and, with notValues,
// a second one.
func (b *ruleBuilder) condition(field string, c *securityapi.Condition) ([]AuthzMatch, bool) {
	key := strings.TrimSpace(c.GetKey())
	attr, header, check := key, "", conditionKeys[key]
	switch {
	case strings.HasPrefix(key, "request.headers[") && strings.HasSuffix(key, "]"):
		attr, header, check = AttrHeader, key[len("request.headers["):len(key)-1], checkGlob
		if header == "" {
			b.unusable(field+".key", ReasonAuthzInvalidRule, "request.headers[] names no header")
			return nil, false
		}
	case strings.HasPrefix(key, "request.auth."):
		b.unusable(field+".key", ReasonAuthzUnsupported,
			"%s comes from a JWT, which this control plane does not validate; enforced fail-closed: an ALLOW rule is dropped, a DENY rule applies without it", key)
		return nil, false
	case check == nil:
		b.unusable(field+".key", ReasonAuthzUnsupported,
			"condition key %q is not supported (supported: source.ip, remote.ip, source.namespace, source.principal, destination.ip, destination.port, connection.sni, request.headers[NAME]); enforced fail-closed", key)
		return nil, false
	}
	if len(c.GetValues())+len(c.GetNotValues()) == 0 {
		b.unusable(field, ReasonAuthzInvalidRule, "condition %s needs values or notValues", key)
		return nil, false
	}
	var out []AuthzMatch
	for _, f := range []valueField{
		{name: "values", attr: attr, values: c.GetValues(), check: check},
		{name: "notValues", attr: attr, values: c.GetNotValues(), not: true, check: check},
	} {
		if len(f.values) == 0 {
			continue
		}
		m, ok := b.match(field+"."+f.name, f)
		if !ok {
			return nil, false
		}
		m.Header = header
		out = append(out, m)
	}
	return out, true
}

// checkGlob accepts a value with at most one `*`, as its first or last
// character (exact, `prefix*`, `*suffix`, or `*` for any).
func checkGlob(v string) error {
	switch {
	case v == "":
		return fmt.Errorf("empty value")
	case v == "*":
		return nil
	case strings.Count(v, "*") > 1, strings.Contains(strings.Trim(v, "*"), "*"):
		return fmt.Errorf("%q: `*` may only be the first or the last character, once", v)
	}
	return nil
}

// checkPath is checkGlob; Istio's path templates ({*}, {**}) are not supported.
func checkPath(v string) error {
	if strings.ContainsAny(v, "{}") {
		return fmt.Errorf("%q: path templates are not supported", v)
	}
	return checkGlob(v)
}

func checkPort(v string) error {
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n == 0 || n > 65535 {
		return fmt.Errorf("%q is not a port in 1-65535", v)
	}
	return nil
}

// checkCIDR accepts an address or a CIDR range.
func checkCIDR(v string) error {
	if _, err := netip.ParsePrefix(v); err == nil {
		return nil
	}
	if _, err := netip.ParseAddr(v); err != nil {
		return fmt.Errorf("%q is neither an IP address nor a CIDR range", v)
	}
	return nil
}

// checkServiceAccount accepts `NAMESPACE/SERVICE_ACCOUNT`.
func checkServiceAccount(v string) error {
	ns, sa, ok := strings.Cut(v, "/")
	if !ok || ns == "" || sa == "" || strings.ContainsAny(v, "*:?#%") || strings.Contains(sa, "/") {
		return fmt.Errorf("%q is not of the form NAMESPACE/SERVICE_ACCOUNT", v)
	}
	return nil
}

func checkTrustDomain(v string) error {
	if v == "" || strings.ContainsAny(v, "/*:?#%") {
		return fmt.Errorf("%q is not a trust domain", v)
	}
	return nil
}
