package meshname

import (
	"net/netip"
	"strings"
	"testing"
)

const host = "postgres-1-vm.default.svc.cluster.local"

func TestMake(t *testing.T) {
	tests := []struct{ got, want string }{
		{OutboundCluster(5432, "", host), "outbound|5432||postgres-1-vm.default.svc.cluster.local"},
		{OutboundCluster(5432, "v1", host), "outbound|5432|v1|postgres-1-vm.default.svc.cluster.local"},
		{InboundCluster(5432, "tcp", host), "inbound|5432|tcp|postgres-1-vm.default.svc.cluster.local"},
		{InboundListener(5432, "tcp", host), "inbound|5432|tcp|postgres-1-vm.default.svc.cluster.local"},
		{SNI(5432, "", host), "outbound_.5432_._.postgres-1-vm.default.svc.cluster.local"},
		{SNI(5432, "v1", host), "outbound_.5432_.v1_.postgres-1-vm.default.svc.cluster.local"},
		{SPIFFEID("cluster.local", "default", "postgres"), "spiffe://cluster.local/ns/default/sa/postgres"},
		{OutboundListener("10.96.0.30", 5432), "10.96.0.30_5432"},
		{OutboundListener("", 8080), "0.0.0.0_8080"},
		{RouteConfig(8080), "8080"},
		{VHDSVirtualHost("8080", host+":8080"), "8080/postgres-1-vm.default.svc.cluster.local:8080"},
		{InboundVirtualHost(8080), "inbound|http|8080"},
		{InboundFilterChain(8080, true), "inbound|8080|mtls"},
		{InboundFilterChain(8080, false), "inbound|8080|plaintext"},
		{VirtualInboundCatchAllChain(true), "virtualInbound-catchall-mtls"},
		{VirtualInboundCatchAllChain(false), "virtualInbound-catchall-plaintext"},
		{GRPCClientListener(host, 5432), "postgres-1-vm.default.svc.cluster.local:5432"},
		{GRPCServerListener("127.0.0.1", 9000), "grpc/server?xds.resource.listening_address=127.0.0.1:9000"},
		{GRPCServerListener("::1", 9000), "grpc/server?xds.resource.listening_address=[::1]:9000"},
		{IstioGRPCServerListener("127.0.0.1", 9000), "xds.istio.io/grpc/lds/inbound/127.0.0.1:9000"},
		{SidecarNodeID("10.0.0.5", "vm-1", "prod", ""), "sidecar~10.0.0.5~vm-1.prod~prod.svc.cluster.local"},
		{SidecarNodeID("10.0.0.5", "vm-1", "prod", "svc.example"), "sidecar~10.0.0.5~vm-1.prod~prod.svc.example"},
		{NodeID{Type: Router, IP: netip.MustParseAddr("::1"), Name: "gw", Namespace: "istio-system", DNSDomain: "istio-system.svc.cluster.local"}.String(),
			"router~::1~gw.istio-system~istio-system.svc.cluster.local"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestParseCluster(t *testing.T) {
	tests := []struct {
		name    string
		want    Cluster
		wantErr string
	}{
		{name: "outbound|5432||" + host, want: Cluster{Outbound, 5432, "", host}},
		{name: "outbound|80|v1|" + host, want: Cluster{Outbound, 80, "v1", host}},
		{name: "inbound|8080|http|" + host, want: Cluster{Inbound, 8080, "http", host}},
		{name: "PassthroughCluster", wantErr: "has 1 parts"},
		{name: "inbound|8080|mtls", wantErr: "has 3 parts"},
		{name: "sideways|80||" + host, wantErr: `direction "sideways"`},
		{name: "outbound|0||" + host, wantErr: `port "0"`},
		{name: "outbound|65536||" + host, wantErr: `port "65536"`},
		{name: "outbound|http||" + host, wantErr: `port "http"`},
		{name: "outbound|080||" + host, wantErr: `port "080"`},
		{name: "outbound|80||", wantErr: "host is empty"},
		{name: "outbound|80|||" + host, wantErr: "has 5 parts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCluster(tt.name)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), tt.name) {
					t.Fatalf("ParseCluster(%q) error = %v, want one naming the name and %q", tt.name, err, tt.wantErr)
				}
				if _, ok := ClusterHost(tt.name); ok && !strings.Contains(tt.wantErr, "port") {
					t.Errorf("ClusterHost(%q) accepted a name ParseCluster rejects for its shape", tt.name)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseCluster(%q) = %+v, %v; want %+v", tt.name, got, err, tt.want)
			}
			if got.String() != tt.name {
				t.Errorf("String() = %q, want %q", got.String(), tt.name)
			}
			if h, ok := ClusterHost(tt.name); !ok || h != tt.want.Host {
				t.Errorf("ClusterHost(%q) = %q, %v; want %q", tt.name, h, ok, tt.want.Host)
			}
		})
	}
}

func TestClusterHostAllocatesNothing(t *testing.T) {
	name := OutboundCluster(80, "", host)
	if n := testing.AllocsPerRun(100, func() { ClusterHost(name) }); n != 0 {
		t.Errorf("ClusterHost allocates %v times per call", n)
	}
}

func TestParseSNI(t *testing.T) {
	tests := []struct {
		sni     string
		want    Cluster
		wantErr bool
	}{
		{sni: SNI(5432, "", host), want: Cluster{Outbound, 5432, "", host}},
		{sni: SNI(80, "v1", host), want: Cluster{Outbound, 80, "v1", host}},
		{sni: "istiod.istio-system.svc", wantErr: true},
		{sni: "outbound_.80_._.", wantErr: true},
		{sni: "outbound_.x_._." + host, wantErr: true},
		{sni: "outbound_.80_." + host, wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseSNI(tt.sni)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseSNI(%q) = %+v, %v; want %+v, error %v", tt.sni, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseSPIFFEID(t *testing.T) {
	tests := []struct {
		id, trustDomain string
		ns, sa          string
		wantErr         string
	}{
		{id: "spiffe://cluster.local/ns/default/sa/postgres", trustDomain: "cluster.local", ns: "default", sa: "postgres"},
		{id: "spiffe://example.org/ns/a/sa/b", trustDomain: "example.org", ns: "a", sa: "b"},
		{id: "spiffe://other.org/ns/a/sa/b", trustDomain: "cluster.local", wantErr: "not a SPIFFE ID in trust domain cluster.local"},
		{id: "spiffe://cluster.local.evil/ns/a/sa/b", trustDomain: "cluster.local", wantErr: "not a SPIFFE ID in trust domain"},
		{id: "https://cluster.local/ns/a/sa/b", trustDomain: "cluster.local", wantErr: "not a SPIFFE ID"},
		{id: "spiffe://cluster.local/ns/a/sa/b/c", trustDomain: "cluster.local", wantErr: "not of the form spiffe://cluster.local/ns/NS/sa/SA"},
		{id: "spiffe://cluster.local/sa/b/ns/a", trustDomain: "cluster.local", wantErr: "not of the form"},
		{id: "spiffe://cluster.local/ns//sa/b", trustDomain: "cluster.local", wantErr: `invalid namespace ""`},
		{id: "spiffe://cluster.local/ns/a/sa/b?x", trustDomain: "cluster.local", wantErr: `invalid service account "b?x"`},
	}
	for _, tt := range tests {
		ns, sa, err := ParseSPIFFEID(tt.id, tt.trustDomain)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseSPIFFEID(%q) error = %v, want %q", tt.id, err, tt.wantErr)
			}
			continue
		}
		if err != nil || ns != tt.ns || sa != tt.sa {
			t.Errorf("ParseSPIFFEID(%q) = %q, %q, %v; want %q, %q", tt.id, ns, sa, err, tt.ns, tt.sa)
		}
		if back := SPIFFEID(tt.trustDomain, ns, sa); back != tt.id {
			t.Errorf("SPIFFEID of the parts = %q, want %q", back, tt.id)
		}
	}
}

func TestParseNodeID(t *testing.T) {
	tests := []struct {
		id      string
		want    NodeID
		wantErr string
	}{
		{id: SidecarNodeID("10.0.0.5", "vm-1", "prod", ""),
			want: NodeID{Sidecar, netip.MustParseAddr("10.0.0.5"), "vm-1", "prod", "prod.svc.cluster.local"}},
		{id: "router~fd00::1~gw-abc.istio-system~istio-system.svc.cluster.local",
			want: NodeID{Router, netip.MustParseAddr("fd00::1"), "gw-abc", "istio-system", "istio-system.svc.cluster.local"}},
		{id: "sidecar~10.0.0.5~pod.ns.extra~ns.svc.cluster.local",
			want: NodeID{Sidecar, netip.MustParseAddr("10.0.0.5"), "pod", "ns.extra", "ns.svc.cluster.local"}},
		{id: "", wantErr: "node id is empty"},
		{id: "sidecar~10.0.0.5~pod.ns", wantErr: "has 3 parts"},
		{id: "ingress~10.0.0.5~pod.ns~ns.svc.cluster.local", wantErr: `type "ingress" is not sidecar or router`},
		{id: "sidecar~10.0.0.500~pod.ns~ns.svc.cluster.local", wantErr: `IP "10.0.0.500" is not an IP address`},
		{id: "sidecar~10.0.0.5~pod~ns.svc.cluster.local", wantErr: `"pod" is not NAME.NAMESPACE`},
		{id: "sidecar~10.0.0.5~.ns~ns.svc.cluster.local", wantErr: `".ns" is not NAME.NAMESPACE`},
		{id: "sidecar~10.0.0.5~pod.~ns.svc.cluster.local", wantErr: `"pod." is not NAME.NAMESPACE`},
	}
	for _, tt := range tests {
		got, err := ParseNodeID(tt.id)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseNodeID(%q) error = %v, want %q", tt.id, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseNodeID(%q) = %+v, %v; want %+v", tt.id, got, err, tt.want)
		}
		if got.String() != tt.id {
			t.Errorf("String() = %q, want %q", got.String(), tt.id)
		}
	}
}

func TestVHDSRouteConfig(t *testing.T) {
	tests := []struct {
		name, want string
		ok         bool
	}{
		{"8080/" + host + ":8080", "8080", true},
		{"8080/" + host, "8080", true},
		{"a/b/host", "a/b", true},
		{"8080/", "8080", true},
		{"8080", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, ok := VHDSRouteConfig(tt.name)
		if got != tt.want || ok != tt.ok {
			t.Errorf("VHDSRouteConfig(%q) = %q, %t; want %q, %t", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}
