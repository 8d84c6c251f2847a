package meshname

import (
	"strings"
	"testing"
)

// FuzzParseNodeID checks that any node ID ParseNodeID accepts is made again,
// field for field, from its parts, and that nothing panics.
func FuzzParseNodeID(f *testing.F) {
	for _, s := range []string{
		"sidecar~10.0.0.5~vm-1.prod~prod.svc.cluster.local",
		"router~fd00::1~gw.istio-system~istio-system.svc.cluster.local",
		"sidecar~fe80::1%eth0~a.b.c~d",
		"sidecar~::ffff:10.0.0.1~a.b~",
		"sidecar~10.0.0.5~pod~ns", "~~~", "", "sidecar~1.2.3.4~a.b~c~d",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		n, err := ParseNodeID(id)
		if err != nil {
			if id != "" && !strings.Contains(err.Error(), "node id") {
				t.Fatalf("error %q does not say it is about the node id", err)
			}
			return
		}
		again, err := ParseNodeID(n.String())
		if err != nil || again != n {
			t.Fatalf("ParseNodeID(%q) = %+v, but its String %q parses to %+v, %v", id, n, n.String(), again, err)
		}
	})
}

// FuzzParseSPIFFEID checks that an accepted SPIFFE ID is exactly the one
// SPIFFEID makes from the parts it returns.
func FuzzParseSPIFFEID(f *testing.F) {
	for _, s := range []string{
		"spiffe://cluster.local/ns/default/sa/postgres",
		"spiffe://cluster.local/ns/a/sa/b/c",
		"spiffe://cluster.local/ns//sa/b",
		"spiffe://cluster.local/ns/a/sa/b?x#y",
		"spiffe://other/ns/a/sa/b", "spiffe://", "",
	} {
		f.Add(s, "cluster.local")
	}
	f.Fuzz(func(t *testing.T, id, trustDomain string) {
		ns, sa, err := ParseSPIFFEID(id, trustDomain)
		if err != nil {
			return
		}
		if back := SPIFFEID(trustDomain, ns, sa); back != id {
			t.Fatalf("ParseSPIFFEID(%q) = %q, %q, which make %q", id, ns, sa, back)
		}
	})
}

// FuzzParseCluster checks that an accepted cluster name is made again from
// its parts and that ClusterHost agrees with ParseCluster.
func FuzzParseCluster(f *testing.F) {
	for _, s := range []string{
		"outbound|5432||postgres.default.svc.cluster.local", "inbound|8080|http|a",
		"inbound|8080|mtls", "outbound|0||a", "outbound|80|||a", "|||",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		c, err := ParseCluster(name)
		if err != nil {
			return
		}
		if c.String() != name {
			t.Fatalf("ParseCluster(%q) = %+v, which makes %q", name, c, c.String())
		}
		if h, ok := ClusterHost(name); !ok || h != c.Host {
			t.Fatalf("ClusterHost(%q) = %q, %v; ParseCluster says host %q", name, h, ok, c.Host)
		}
	})
}

// FuzzVHDSRouteConfig: a VHDS name from a client's subscription splits into
// a route configuration that, joined with the rest, gives the name back.
func FuzzVHDSRouteConfig(f *testing.F) {
	for _, s := range []string{"8080/a.default.svc.cluster.local:8080", "8080", "", "a/b/c", "/", "8080/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		rc, ok := VHDSRouteConfig(name)
		if !ok {
			return
		}
		if vh := name[len(rc)+1:]; VHDSVirtualHost(rc, vh) != name || strings.Contains(vh, "/") {
			t.Fatalf("VHDSRouteConfig(%q) = %q: does not split the name at its last slash", name, rc)
		}
	})
}
