package certauthority

import (
	"fmt"
	"net/url"
	"strings"
)

// Identity is a proven workload identity: a Kubernetes namespace and service account.
type Identity struct {
	Namespace      string
	ServiceAccount string
}

// SPIFFEID is spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT.
func (id Identity) SPIFFEID(trustDomain string) *url.URL {
	return &url.URL{Scheme: "spiffe", Host: trustDomain, Path: "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount}
}

func (id Identity) String() string { return id.Namespace + "/" + id.ServiceAccount }

func (id Identity) validate() error {
	for _, part := range []struct{ name, v string }{{"namespace", id.Namespace}, {"service account", id.ServiceAccount}} {
		if part.v == "" || strings.ContainsAny(part.v, "/:?#") {
			return fmt.Errorf("invalid %s %q", part.name, part.v)
		}
	}
	return nil
}

// identityFromSPIFFE parses spiffe://TRUST_DOMAIN/ns/NS/sa/SA for the given trust domain.
func identityFromSPIFFE(u *url.URL, trustDomain string) (Identity, error) {
	if u.Scheme != "spiffe" || u.Host != trustDomain {
		return Identity{}, fmt.Errorf("%s is not a SPIFFE ID in trust domain %s", u, trustDomain)
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if len(parts) != 4 || parts[0] != "ns" || parts[2] != "sa" {
		return Identity{}, fmt.Errorf("SPIFFE ID %s is not of the form spiffe://%s/ns/NS/sa/SA", u, trustDomain)
	}
	id := Identity{Namespace: parts[1], ServiceAccount: parts[3]}
	if err := id.validate(); err != nil {
		return Identity{}, fmt.Errorf("SPIFFE ID %s: %w", u, err)
	}
	return id, nil
}

// IdentityFromServiceAccountUser parses Kubernetes' system:serviceaccount:NS:SA.
func IdentityFromServiceAccountUser(user string) (Identity, error) {
	parts := strings.Split(user, ":")
	if len(parts) != 4 || parts[0] != "system" || parts[1] != "serviceaccount" {
		return Identity{}, fmt.Errorf("user %q is not a service account", user)
	}
	id := Identity{Namespace: parts[2], ServiceAccount: parts[3]}
	if err := id.validate(); err != nil {
		return Identity{}, fmt.Errorf("user %q: %w", user, err)
	}
	return id, nil
}
