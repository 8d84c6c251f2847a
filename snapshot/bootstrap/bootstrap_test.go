package bootstrap

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"

	"github.com/librarymesh/controlplane/meshname"
	"github.com/librarymesh/controlplane/snapshot"
)

var update = flag.Bool("update", false, "rewrite golden files")

func vmOptions() Options {
	return Options{
		Name: "postgres-1-vm", Namespace: "default", ServiceAccount: "postgres",
		IP: "10.0.0.5", Labels: map[string]string{"app": "postgres", "version": "v1"},
		IstioVersion: "1.32.0", XDSAddress: "gateway.example.com:15012",
	}
}

func TestBootstrapGolden(t *testing.T) {
	cases := map[string]func(*Options){
		"vm-dns-delta": func(*Options) {},
		"vm-ip-sotw": func(o *Options) {
			o.XDSAddress = "192.0.2.10:15012"
			o.SotW = true
			o.SDSSocket = "./var/run/secrets/workload-spiffe-uds/socket"
			o.RootCertPath = "./root-cert.pem"
			o.AdminPort = 15900
			o.StatsPort = 15990
		},
	}
	for name, mod := range cases {
		t.Run(name, func(t *testing.T) {
			o := vmOptions()
			mod(&o)
			b, err := Bootstrap(o)
			if err != nil {
				t.Fatal(err)
			}
			got, err := MarshalYAML(b)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", name+".yaml")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./snapshot/bootstrap -update)", err)
			}
			if string(want) != string(got) {
				t.Errorf("bootstrap differs from %s; got:\n%s", path, got)
			}
			back, err := UnmarshalYAML(got)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(b, back) {
				t.Errorf("YAML round trip changed the bootstrap:\n%v\n%v", b, back)
			}
		})
	}
}

// The node the bootstrap announces must be one the control plane accepts.
func TestBootstrapNodeParses(t *testing.T) {
	b, err := Bootstrap(vmOptions())
	if err != nil {
		t.Fatal(err)
	}
	p, err := snapshot.ParseProxy(b.GetNode())
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "postgres-1-vm" || p.Namespace != "default" || p.Metadata.ServiceAccount != "postgres" ||
		p.Metadata.InterceptionMode != "NONE" || p.Metadata.Labels["version"] != "v1" || p.IPs[0] != "10.0.0.5" {
		t.Errorf("parsed proxy = %+v", p)
	}
}

func TestBootstrapXDSCluster(t *testing.T) {
	b, err := Bootstrap(vmOptions())
	if err != nil {
		t.Fatal(err)
	}
	var xds *clusterv3.Cluster
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == meshname.XDSCluster {
			xds = c
		}
	}
	if xds == nil {
		t.Fatal("no xds-grpc cluster")
	}
	if xds.GetType() != clusterv3.Cluster_STRICT_DNS {
		t.Errorf("type = %v, want STRICT_DNS for a host name", xds.GetType())
	}
	tls := &tlsv3.UpstreamTlsContext{}
	if err := xds.GetTransportSocket().GetTypedConfig().UnmarshalTo(tls); err != nil {
		t.Fatal(err)
	}
	if tls.GetSni() != DefaultServerSNI {
		t.Errorf("SNI = %q", tls.GetSni())
	}
	if got := tls.GetCommonTlsContext().GetValidationContext().GetTrustedCa().GetFilename(); got != DefaultRootCertPath {
		t.Errorf("trusted CA = %q", got)
	}
	if got := b.GetDynamicResources().GetAdsConfig().GetApiType(); got != corev3.ApiConfigSource_DELTA_GRPC {
		t.Errorf("ADS api type = %v, want DELTA_GRPC", got)
	}
	if got := b.GetAdmin().GetAddress().GetSocketAddress().GetAddress(); got != "127.0.0.1" {
		t.Errorf("admin address = %q", got)
	}
}

func TestBootstrapErrors(t *testing.T) {
	cases := map[string]struct {
		mod  func(*Options)
		want string
	}{
		"bad IP":         {func(o *Options) { o.IP = "10.0.0" }, "not an IP"},
		"no port":        {func(o *Options) { o.XDSAddress = "gateway" }, "HOST:PORT"},
		"port zero":      {func(o *Options) { o.XDSAddress = "gateway:0" }, "1-65535"},
		"no namespace":   {func(o *Options) { o.Namespace = "" }, "namespace is empty"},
		"no SA":          {func(o *Options) { o.ServiceAccount = "" }, "service account is empty"},
		"port too high":  {func(o *Options) { o.XDSAddress = "gateway:70000" }, "1-65535"},
		"stats on admin": {func(o *Options) { o.StatsPort = DefaultAdminPort }, "stats port 15000 is the admin port"},
		"stats too high": {func(o *Options) { o.StatsPort = 70000 }, "stats port 70000 must be in 1-65535"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			o := vmOptions()
			tc.mod(&o)
			_, err := Bootstrap(o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestUnmarshalYAMLRejectsInvalid(t *testing.T) {
	if _, err := UnmarshalYAML([]byte("static_resources:\n  clusters:\n  - name: ''\n")); err == nil {
		t.Error("want a validation error for a cluster with no name")
	}
	if _, err := UnmarshalYAML([]byte("nodes: {}\n")); err == nil {
		t.Error("want an error for an unknown field")
	}
}

// The stats listener serves Envoy's Prometheus stats on 0.0.0.0:15090 and
// routes only /stats/prometheus, to a cluster of the admin endpoint.
func TestBootstrapStatsListener(t *testing.T) {
	for name, tc := range map[string]struct {
		admin, stats, wantAdmin, wantStats uint32
	}{
		"defaults": {0, 0, DefaultAdminPort, meshname.StatsPort},
		"moved":    {15900, 15990, 15900, 15990},
	} {
		t.Run(name, func(t *testing.T) {
			o := vmOptions()
			o.AdminPort, o.StatsPort = tc.admin, tc.stats
			b, err := Bootstrap(o)
			if err != nil {
				t.Fatal(err)
			}
			ls := b.GetStaticResources().GetListeners()
			if len(ls) != 1 || ls[0].GetName() != meshname.StatsListener {
				t.Fatalf("static listeners = %v, want one %s", ls, meshname.StatsListener)
			}
			sa := ls[0].GetAddress().GetSocketAddress()
			if sa.GetAddress() != "0.0.0.0" || sa.GetPortValue() != tc.wantStats {
				t.Errorf("stats listener on %s:%d, want 0.0.0.0:%d", sa.GetAddress(), sa.GetPortValue(), tc.wantStats)
			}
			hcm := &hcmv3.HttpConnectionManager{}
			if err := ls[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
				t.Fatal(err)
			}
			if err := hcm.ValidateAll(); err != nil {
				t.Errorf("stats connection manager: %v", err)
			}
			routes := hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes()
			if len(routes) != 1 || routes[0].GetMatch().GetPath() != meshname.StatsPath || routes[0].GetRoute().GetCluster() != meshname.StatsCluster {
				t.Errorf("stats routes = %v, want only %s to %s", routes, meshname.StatsPath, meshname.StatsCluster)
			}
			var stats *clusterv3.Cluster
			for _, c := range b.GetStaticResources().GetClusters() {
				if c.GetName() == meshname.StatsCluster {
					stats = c
				}
			}
			if stats == nil {
				t.Fatalf("no %s cluster", meshname.StatsCluster)
			}
			if err := stats.ValidateAll(); err != nil {
				t.Error(err)
			}
			ep := stats.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
			admin := b.GetAdmin().GetAddress().GetSocketAddress()
			if ep.GetAddress() != "127.0.0.1" || ep.GetPortValue() != tc.wantAdmin || admin.GetPortValue() != tc.wantAdmin || admin.GetAddress() != "127.0.0.1" {
				t.Errorf("stats cluster reaches %s:%d, admin on %s:%d, want both 127.0.0.1:%d",
					ep.GetAddress(), ep.GetPortValue(), admin.GetAddress(), admin.GetPortValue(), tc.wantAdmin)
			}
		})
	}
}
