package certauthority

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/librarymesh/controlplane/meshname"
)

// Identity is a proven workload identity: a Kubernetes namespace and service account.
type Identity struct {
	Namespace      string
	ServiceAccount string
}

// SPIFFEID is the identity's meshname.SPIFFEID as a URL for a certificate's URI SAN.
func (id Identity) SPIFFEID(trustDomain string) (*url.URL, error) {
	u, err := url.Parse(meshname.SPIFFEID(trustDomain, id.Namespace, id.ServiceAccount))
	if err != nil {
		return nil, fmt.Errorf("SPIFFE ID of %s: %w", id, err)
	}
	return u, nil
}

func (id Identity) String() string { return id.Namespace + "/" + id.ServiceAccount }

func (id Identity) validate() error {
	if err := meshname.CheckIdentityPart("namespace", id.Namespace); err != nil {
		return err
	}
	return meshname.CheckIdentityPart("service account", id.ServiceAccount)
}

// identityFromSPIFFE reads a certificate's URI SAN with meshname.ParseSPIFFEID
// for the given trust domain.
func identityFromSPIFFE(u *url.URL, trustDomain string) (Identity, error) {
	ns, sa, err := meshname.ParseSPIFFEID(u.String(), trustDomain)
	if err != nil {
		return Identity{}, err
	}
	return Identity{Namespace: ns, ServiceAccount: sa}, nil
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
