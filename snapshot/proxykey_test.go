package snapshot

import "testing"

// TestProxyKeyNamesWhatBuildReads: proxies that differ in anything Build
// reads get different keys, equal ones the same key however their labels
// were written, and a proxy's key, made once, stays its own.
func TestProxyKeyNamesWhatBuildReads(t *testing.T) {
	base := func() *Proxy {
		return &Proxy{
			Type: SidecarProxy, Namespace: "default", IPs: []string{"10.8.0.1"}, Locality: "r/z/s",
			Metadata: Metadata{Labels: map[string]string{"app": "inventory", "version": "v1"}, InterceptionMode: "REDIRECT"},
		}
	}
	same := base()
	same.Metadata.Labels = map[string]string{"version": "v1", "app": "inventory"}
	if a, b := proxyKey(base()), proxyKey(same); a != b {
		t.Errorf("equal proxies: keys %q and %q", a, b)
	}
	changes := map[string]func(*Proxy){
		"type":         func(p *Proxy) { p.Type = RouterProxy },
		"generator":    func(p *Proxy) { p.Metadata.Generator = "grpc" },
		"interception": func(p *Proxy) { p.Metadata.InterceptionMode = "TPROXY" },
		"namespace":    func(p *Proxy) { p.Namespace = "other" },
		"IPs":          func(p *Proxy) { p.IPs = append(p.IPs, "10.8.0.2") },
		"label value":  func(p *Proxy) { p.Metadata.Labels["version"] = "v2" },
		"label added":  func(p *Proxy) { p.Metadata.Labels["tier"] = "db" },
		"locality":     func(p *Proxy) { p.Locality = "r/z2/s" },
		"delta ADS":    func(p *Proxy) { p.DeltaADS = true },
	}
	want := proxyKey(base())
	for name, change := range changes {
		p := base()
		change(p)
		got := proxyKey(p)
		if got == want {
			t.Errorf("%s changed: same key %q", name, got)
		}
		if again := proxyKey(p); again != got {
			t.Errorf("%s: second key %q, first %q", name, again, got)
		}
	}
}
