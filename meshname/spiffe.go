package meshname

import (
	"fmt"
	"strings"
)

const spiffeScheme = "spiffe://"

// SPIFFEID is the identity of a Kubernetes service account:
// `spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT`.
func SPIFFEID(trustDomain, namespace, serviceAccount string) string {
	return spiffeScheme + trustDomain + "/ns/" + namespace + "/sa/" + serviceAccount
}

// ParseSPIFFEID reads a SPIFFEID of trustDomain back into its namespace and
// service account. Either must pass CheckIdentityPart.
func ParseSPIFFEID(id, trustDomain string) (namespace, serviceAccount string, err error) {
	rest, ok := strings.CutPrefix(id, spiffeScheme+trustDomain+"/")
	if !ok {
		return "", "", fmt.Errorf("%s is not a SPIFFE ID in trust domain %s", id, trustDomain)
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 4 || parts[0] != "ns" || parts[2] != "sa" {
		return "", "", fmt.Errorf("SPIFFE ID %s is not of the form %s", id, SPIFFEID(trustDomain, "NS", "SA"))
	}
	for _, p := range []struct{ name, v string }{{"namespace", parts[1]}, {"service account", parts[3]}} {
		if err := CheckIdentityPart(p.name, p.v); err != nil {
			return "", "", fmt.Errorf("SPIFFE ID %s: %w", id, err)
		}
	}
	return parts[1], parts[3], nil
}

// CheckIdentityPart reports whether v can be the namespace or service
// account (named by what) of a SPIFFE ID: non-empty, none of `/:?#%`
// (the last so that a URL's escaped form cannot name another identity).
func CheckIdentityPart(what, v string) error {
	if v == "" || strings.ContainsAny(v, "/:?#%") {
		return fmt.Errorf("invalid %s %q", what, v)
	}
	return nil
}
