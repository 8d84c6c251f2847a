package meshname

import "testing"

func TestParseCredentialSecret(t *testing.T) {
	for _, tc := range []struct {
		in, ns, name string
		ca, ok       bool
	}{
		{CredentialSecret("web-cert"), "istio-system", "web-cert", false, true},
		{CredentialCASecret("web-cert"), "istio-system", "web-cert", true, true},
		{"kubernetes://apps/web-cert", "apps", "web-cert", false, true},
		{"kubernetes://apps/web-cert-cacert", "apps", "web-cert", true, true},
		{"kubernetes://-cacert", "istio-system", "-cacert", false, true},
		{WorkloadSecret, "", "", false, false},
		{RootSecret, "", "", false, false},
		{"kubernetes://", "", "", false, false},
		{"kubernetes://a/b/c", "", "", false, false},
		{"kubernetes:///x", "", "", false, false},
	} {
		ns, name, ca, ok := ParseCredentialSecret(tc.in, "istio-system")
		if ns != tc.ns || name != tc.name || ca != tc.ca || ok != tc.ok {
			t.Errorf("ParseCredentialSecret(%q) = %q, %q, %v, %v; want %q, %q, %v, %v", tc.in, ns, name, ca, ok, tc.ns, tc.name, tc.ca, tc.ok)
		}
	}
}

// FuzzParseCredentialSecret: an accepted name is the one CredentialSecret
// or CredentialCASecret makes (with the namespace when it was given).
func FuzzParseCredentialSecret(f *testing.F) {
	for _, s := range []string{"kubernetes://a", "kubernetes://a-cacert", "kubernetes://ns/a", "default", "kubernetes://", "kubernetes:///"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ns, name, ca, ok := ParseCredentialSecret(s, "proxy-ns")
		if !ok {
			return
		}
		want := CredentialSecret(name)
		if ca {
			want = CredentialCASecret(name)
		}
		if ns != "proxy-ns" || len(s) > len(want) {
			want = credentialPrefix + ns + "/" + want[len(credentialPrefix):]
		}
		if want != s {
			t.Fatalf("ParseCredentialSecret(%q) = %q, %q, %v: makes %q", s, ns, name, ca, want)
		}
	})
}
