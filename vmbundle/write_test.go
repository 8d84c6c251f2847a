package vmbundle

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/librarymesh/controlplane/snapshot/bootstrap"
)

func testOptions() BundleOptions {
	return BundleOptions{
		Name: "postgres-1-vm", Namespace: "default", ServiceAccount: "postgres", IP: "192.0.2.5",
		Labels: map[string]string{"app": "postgres"}, Ports: []uint32{5432},
		Address: "192.0.2.10:15012", RootPEM: []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"),
		Token: "aaa.bbb.ccc", Hosts: true,
	}
}

func TestWriteBundle(t *testing.T) {
	dir := t.TempDir()
	names, err := WriteBundle(dir, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{FileReadme, FileBootstrap, FileToken, FileClusterEnv, FileAgentUnit, FileEnvoyUnit, FileHosts, FileRootCert}
	for _, w := range want {
		if !slices.Contains(names, w) {
			t.Errorf("bundle lacks %s (has %v)", w, names)
		}
	}
	boot, err := os.ReadFile(filepath.Join(dir, FileBootstrap))
	if err != nil {
		t.Fatal(err)
	}
	b, err := bootstrap.UnmarshalYAML(boot)
	if err != nil {
		t.Fatal(err)
	}
	if b.GetNode().GetId() != "sidecar~192.0.2.5~postgres-1-vm.default~default.svc.cluster.local" {
		t.Errorf("node id = %s", b.GetNode().GetId())
	}
	fi, err := os.Stat(filepath.Join(dir, FileToken))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode = %v, %v", fi.Mode(), err)
	}
	hosts, _ := os.ReadFile(filepath.Join(dir, FileHosts))
	if !strings.Contains(string(hosts), "192.0.2.10 istiod.istio-system.svc istio-pilot.istio-system istio-citadel.istio-system\n") {
		t.Errorf("hosts = %s", hosts)
	}
	readme, _ := os.ReadFile(filepath.Join(dir, FileReadme))
	for _, n := range names {
		if !strings.Contains(string(readme), "`"+n+"`") && n != FileReadme {
			t.Errorf("README does not document %s", n)
		}
	}
	for _, port := range []string{":15090/stats/prometheus", ":15020/stats/prometheus"} {
		if !strings.Contains(string(readme), port) {
			t.Errorf("README does not say where Prometheus scrapes %s", port)
		}
	}
	env, _ := os.ReadFile(filepath.Join(dir, FileClusterEnv))
	if !strings.Contains(string(env), EnvMetricsAddr+"="+DefaultMetricsAddress+"\n") {
		t.Errorf("cluster.env lacks %s=%s", EnvMetricsAddr, DefaultMetricsAddress)
	}
	unit, _ := os.ReadFile(filepath.Join(dir, FileAgentUnit))
	if !strings.Contains(string(unit), "ExecStart=/usr/local/bin/controlplane agent --bundle /etc/controlplane") {
		t.Errorf("agent unit:\n%s", unit)
	}
}

func TestReadBundleRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if _, err := WriteBundle(dir, testOptions()); err != nil {
		t.Fatal(err)
	}
	b, err := ReadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string]string{
		EnvCAAddr: "192.0.2.10:15012", EnvServerSAN: "istiod.istio-system.svc", EnvNamespace: "default",
		EnvSA: "postgres", EnvLabelsJSON: `{"app":"postgres","security.istio.io/tlsMode":"istio"}`, EnvSecretTTL: "24h0m0s", EnvInboundPorts: "5432",
		EnvSDSSocket: bootstrap.DefaultSDSSocket, EnvTrustDomain: "cluster.local",
	}
	for k, want := range checks {
		if got := b.Env[k]; got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if b.Token != "aaa.bbb.ccc" {
		t.Errorf("token = %q", b.Token)
	}
	if err := os.Remove(filepath.Join(dir, FileToken)); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadBundle(dir); err == nil || !strings.Contains(err.Error(), "missing bootstrap-token") {
		t.Errorf("missing token: err = %v", err)
	}
}

func TestWriteBundleErrors(t *testing.T) {
	cases := map[string]struct {
		mod  func(*BundleOptions)
		want string
	}{
		"no root":        {func(o *BundleOptions) { o.RootPEM = nil }, "root certificate is empty"},
		"no token":       {func(o *BundleOptions) { o.Token = " " }, "bootstrap token"},
		"hosts by name":  {func(o *BundleOptions) { o.Address = "gw.example.com:15012" }, "needs the gateway IP"},
		"bad IP":         {func(o *BundleOptions) { o.IP = "vm" }, "not an IP"},
		"bad address":    {func(o *BundleOptions) { o.Address = "gw"; o.Hosts = false }, "HOST:PORT"},
		"bad gateway IP": {func(o *BundleOptions) { o.GatewayIP = "gw" }, "not an IP"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "bundle")
			o := testOptions()
			tc.mod(&o)
			_, err := WriteBundle(dir, o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
			if _, err := os.Stat(dir); err == nil {
				t.Error("bundle folder was created despite the error")
			}
		})
	}
}

func TestParseEnv(t *testing.T) {
	env, order, err := ParseEnv([]byte("# c\nA=1\n\nB = 'x y'\nC=\"q\"\n"))
	if err != nil || env["A"] != "1" || env["B"] != "x y" || env["C"] != "q" || strings.Join(order, "") != "ABC" {
		t.Errorf("ParseEnv = %v %v %v", env, order, err)
	}
	if _, _, err := ParseEnv([]byte("novalue\n")); err == nil {
		t.Error("want an error for a line without =")
	}
}
