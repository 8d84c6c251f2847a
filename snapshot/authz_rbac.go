package snapshot

import (
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/librarymesh/controlplane/registry"
)

// rbacPolicy is one rule as an RBAC policy: any of its From entries (each
// an and of its matches and the principal-side conditions) and any of its
// To entries (each an and of its matches and the permission-side
// conditions). Istio puts source and header conditions on the principal
// side, destination and SNI conditions on the permission side.
func rbacPolicy(rule *registry.AuthzRule) *rbacv3.Policy {
	var whenPrincipals, whenPermissions []registry.AuthzMatch
	for _, m := range rule.When {
		if principalSide(m.Attr) {
			whenPrincipals = append(whenPrincipals, m)
		} else {
			whenPermissions = append(whenPermissions, m)
		}
	}
	p := &rbacv3.Policy{}
	froms := rule.From
	if len(froms) == 0 {
		froms = [][]registry.AuthzMatch{nil}
	}
	for _, from := range froms {
		p.Principals = append(p.Principals, principalAnd(append(cloneMatches(from), whenPrincipals...)))
	}
	tos := rule.To
	if len(tos) == 0 {
		tos = [][]registry.AuthzMatch{nil}
	}
	for _, to := range tos {
		p.Permissions = append(p.Permissions, permissionAnd(append(cloneMatches(to), whenPermissions...)))
	}
	return p
}

// cloneMatches copies a match list, so that appending never writes into the model.
func cloneMatches(ms []registry.AuthzMatch) []registry.AuthzMatch {
	return append([]registry.AuthzMatch(nil), ms...)
}

func principalSide(attr string) bool {
	switch attr {
	case registry.AttrSourcePrincipal, registry.AttrSourceNamespace, registry.AttrSourceIP, registry.AttrRemoteIP, registry.AttrHeader:
		return true
	}
	return false
}

func principalAny() *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Any{Any: true}}
}

func permissionAny() *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_Any{Any: true}}
}

// policyNever matches no request (Istio's policy for a policy without rules).
func policyNever() *rbacv3.Policy {
	return &rbacv3.Policy{
		Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_NotRule{NotRule: permissionAny()}}},
		Principals:  []*rbacv3.Principal{{Identifier: &rbacv3.Principal_NotId{NotId: principalAny()}}},
	}
}

// matchSet builds one side of an RBAC policy (principals or permissions)
// from matches: one value, any of several, not, all of several, anything.
type matchSet[T any] struct {
	one func(registry.AuthzMatch, string) T
	or  func([]T) T
	not func(T) T
	and func([]T) T
	any func() T
}

// allOf is all of ms (each any of its values, negated when Not); anything
// when there is none.
func allOf[T any](ms []registry.AuthzMatch, s matchSet[T]) T {
	var all []T
	for _, m := range ms {
		var alts []T
		for _, v := range m.Values {
			alts = append(alts, s.one(m, v))
		}
		x := alts[0]
		if len(alts) > 1 {
			x = s.or(alts)
		}
		if m.Not {
			x = s.not(x)
		}
		all = append(all, x)
	}
	switch len(all) {
	case 0:
		return s.any()
	case 1:
		return all[0]
	}
	return s.and(all)
}

// principalAnd is all of ms; any principal when there is none.
func principalAnd(ms []registry.AuthzMatch) *rbacv3.Principal {
	return allOf(ms, matchSet[*rbacv3.Principal]{
		one: principalFor,
		or: func(ids []*rbacv3.Principal) *rbacv3.Principal {
			return &rbacv3.Principal{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: ids}}}
		},
		not: func(id *rbacv3.Principal) *rbacv3.Principal {
			return &rbacv3.Principal{Identifier: &rbacv3.Principal_NotId{NotId: id}}
		},
		and: func(ids []*rbacv3.Principal) *rbacv3.Principal {
			return &rbacv3.Principal{Identifier: &rbacv3.Principal_AndIds{AndIds: &rbacv3.Principal_Set{Ids: ids}}}
		},
		any: principalAny,
	})
}

// permissionAnd is all of ms; any permission when there is none.
func permissionAnd(ms []registry.AuthzMatch) *rbacv3.Permission {
	return allOf(ms, matchSet[*rbacv3.Permission]{
		one: permissionFor,
		or: func(rules []*rbacv3.Permission) *rbacv3.Permission {
			return &rbacv3.Permission{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: rules}}}
		},
		not: func(rule *rbacv3.Permission) *rbacv3.Permission {
			return &rbacv3.Permission{Rule: &rbacv3.Permission_NotRule{NotRule: rule}}
		},
		and: func(rules []*rbacv3.Permission) *rbacv3.Permission {
			return &rbacv3.Permission{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{Rules: rules}}}
		},
		any: permissionAny,
	})
}

// principalFor is one value of a principal-side match. Principals and
// namespaces are read from the peer certificate's URI SAN, the SPIFFE ID
// `spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/ACCOUNT`.
func principalFor(m registry.AuthzMatch, v string) *rbacv3.Principal {
	switch m.Attr {
	case registry.AttrSourcePrincipal:
		return authenticated(globMatcher("spiffe://", v, false))
	case registry.AttrSourceNamespace:
		return authenticated(regexMatcher(".*/ns/" + globRegex(v) + "/.*"))
	case registry.AttrSourceIP:
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_DirectRemoteIp{DirectRemoteIp: cidrRange(v)}}
	case registry.AttrRemoteIP:
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_RemoteIp{RemoteIp: cidrRange(v)}}
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Header{Header: headerMatcher(m.Header, v, false)}}
}

// permissionFor is one value of a permission-side match.
func permissionFor(m registry.AuthzMatch, v string) *rbacv3.Permission {
	switch m.Attr {
	case registry.AttrDestinationPort:
		port, _ := strconv.ParseUint(v, 10, 32) // checked by the registry
		return &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationPort{DestinationPort: uint32(port)}}
	case registry.AttrDestinationIP:
		return &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationIp{DestinationIp: cidrRange(v)}}
	case registry.AttrSNI:
		return &rbacv3.Permission{Rule: &rbacv3.Permission_RequestedServerName{RequestedServerName: globMatcher("", v, false)}}
	case registry.AttrHost:
		return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: headerMatcher(":authority", v, true)}}
	case registry.AttrMethod:
		return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: headerMatcher(":method", v, false)}}
	case registry.AttrPath:
		return &rbacv3.Permission{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{
			Rule: &matcherv3.PathMatcher_Path{Path: globMatcher("", v, false)}}}}
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: headerMatcher(m.Header, v, false)}}
}

func authenticated(name *matcherv3.StringMatcher) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{
		Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: name}}}
}

// globMatcher matches an Istio value: `*` any non-empty value, `prefix*`,
// `*suffix`, else exact; prefix is put before an exact or prefix value.
func globMatcher(prefix, v string, ignoreCase bool) *matcherv3.StringMatcher {
	m := &matcherv3.StringMatcher{IgnoreCase: ignoreCase}
	switch {
	case v == "*":
		return regexMatcher(".+") // any non-empty value (an authenticated peer, for principals)
	case strings.HasSuffix(v, "*"):
		m.MatchPattern = &matcherv3.StringMatcher_Prefix{Prefix: prefix + strings.TrimSuffix(v, "*")}
	case strings.HasPrefix(v, "*"):
		m.MatchPattern = &matcherv3.StringMatcher_Suffix{Suffix: strings.TrimPrefix(v, "*")}
	default:
		m.MatchPattern = &matcherv3.StringMatcher_Exact{Exact: prefix + v}
	}
	return m
}

func regexMatcher(re string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}}
}

// globRegex is an Istio value within one path segment, as a regex.
func globRegex(v string) string {
	switch {
	case v == "*":
		return "[^/]+"
	case strings.HasSuffix(v, "*"):
		return regexp.QuoteMeta(strings.TrimSuffix(v, "*")) + "[^/]*"
	case strings.HasPrefix(v, "*"):
		return "[^/]*" + regexp.QuoteMeta(strings.TrimPrefix(v, "*"))
	}
	return regexp.QuoteMeta(v)
}

// headerMatcher matches a header's value; `*` means present.
func headerMatcher(name, v string, ignoreCase bool) *routev3.HeaderMatcher {
	if v == "*" {
		return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}
	}
	return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
		StringMatch: globMatcher("", v, ignoreCase)}}
}

// cidrRange is an address or CIDR range (checked by the registry).
func cidrRange(v string) *corev3.CidrRange {
	if p, err := netip.ParsePrefix(v); err == nil {
		return &corev3.CidrRange{AddressPrefix: p.Addr().String(), PrefixLen: wrapperspb.UInt32(uint32(p.Bits()))}
	}
	a, _ := netip.ParseAddr(v)
	return &corev3.CidrRange{AddressPrefix: a.String(), PrefixLen: wrapperspb.UInt32(uint32(a.BitLen()))}
}

// grpcHeaderAllowed reports whether grpc-go's RBAC accepts a matcher on a
// header (gRFC A41 refuses :scheme and grpc-* names).
func grpcHeaderAllowed(name string) bool {
	n := strings.ToLower(name)
	return n != ":scheme" && !strings.HasPrefix(n, "grpc-")
}
