package registry

import (
	"cmp"
	"slices"

	memdb "github.com/hashicorp/go-memdb"
)

// AuthzAction is what an AuthorizationPolicy does with a request its rules match.
type AuthzAction int

// Actions, in Istio's names.
const (
	AuthzAllow AuthzAction = iota
	AuthzDeny
	AuthzAudit
	// AuthzCustom delegates to an extension provider. The control plane has
	// none, so (as Istio does for a provider it cannot find) the policy
	// denies every request to the workloads it selects.
	AuthzCustom
)

func (a AuthzAction) String() string {
	switch a {
	case AuthzDeny:
		return "DENY"
	case AuthzAudit:
		return "AUDIT"
	case AuthzCustom:
		return "CUSTOM"
	}
	return "ALLOW"
}

// Attribute keys of authorization matches: Istio's condition keys, plus the
// request attributes `to.operation` names.
const (
	AttrSourcePrincipal = "source.principal" // SPIFFE ID without "spiffe://"
	AttrSourceNamespace = "source.namespace" // the ns part of the peer's SPIFFE ID
	AttrSourceIP        = "source.ip"        // the peer's address
	AttrRemoteIP        = "remote.ip"        // the original client's address
	AttrDestinationIP   = "destination.ip"
	AttrDestinationPort = "destination.port"
	AttrSNI             = "connection.sni"
	AttrHost            = "request.host"    // operation hosts (:authority)
	AttrMethod          = "request.method"  // operation methods
	AttrPath            = "request.path"    // operation paths
	AttrHeader          = "request.headers" // request.headers[Header]
)

// HTTPOnly reports whether an attribute exists only for HTTP requests (a
// TCP port has no host, method, path or headers).
func HTTPOnly(attr string) bool {
	return attr == AttrHost || attr == AttrMethod || attr == AttrPath || attr == AttrHeader
}

// AuthzMatch is one constraint of a rule: the attribute equals one of
// Values (each exact, `prefix*`, `*suffix` or `*`), or with Not, none of
// them.
type AuthzMatch struct {
	Attr   string
	Header string // the header name of AttrHeader
	Values []string
	Not    bool
	Field  string // where it was written, e.g. "spec.rules[0].from[0].source.principals"
}

// AuthzRule is one rule: it matches when any From entry matches (or there
// is none), any To entry matches (or there is none), and every When match
// holds. An entry matches when all its matches hold.
type AuthzRule struct {
	From [][]AuthzMatch
	To   [][]AuthzMatch
	When []AuthzMatch
	// Unusable lists the fields of the rule that cannot be enforced (JWT
	// request principals, invalid values). They are not in the matches: a
	// DENY or AUDIT rule applies without them (it matches more), an ALLOW
	// rule is dropped (it matches nothing). Fail closed either way.
	Unusable []string
}

// AuthorizationPolicy is access control on the inbound side of the
// workloads it selects.
type AuthorizationPolicy struct {
	Namespace string
	Name      string
	// Selector picks workloads by label; nil applies to the whole namespace
	// (the whole mesh in the root namespace).
	Selector map[string]string
	Action   AuthzAction
	Provider string // CUSTOM's extension provider
	// Rules; none means the policy matches nothing (an ALLOW policy
	// without rules denies every request).
	Rules []AuthzRule
}

// collectAuthz returns the AuthorizationPolicies of the policies table,
// sorted by namespace and name.
func collectAuthz(txn *memdb.Txn) []*AuthorizationPolicy {
	var out []*AuthorizationPolicy
	it, err := txn.Get(tablePolicies, indexID)
	must(err)
	for obj := it.Next(); obj != nil; obj = it.Next() {
		if r := obj.(*policyRow); r.Authz != nil {
			out = append(out, r.Authz)
		}
	}
	slices.SortStableFunc(out, func(a, b *AuthorizationPolicy) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return out
}
