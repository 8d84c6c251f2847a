package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/librarymesh/controlplane/internal/e2e"
	"github.com/librarymesh/controlplane/meshname"
	"github.com/librarymesh/controlplane/snapshot/bootstrap"
	"github.com/librarymesh/controlplane/vmbundle"
)

const (
	inventoryHost    = "inventory.default.svc.cluster.local"
	inventoryCluster = "outbound|8080||inventory.default.svc.cluster.local"
)

// TestVMOutboundThroughAgentDNS: on a VM without iptables, an app resolves
// a mesh name through the agent's DNS (the bundle's setting) and connects
// to the address where the VM's Envoy, configured by us, binds the
// service's outbound listener, which routes to the service's mTLS cluster.
// Envoy is not available here: the test reads the VM's config over ADS as
// the bundle's bootstrap node and binds the listener's address itself.
func TestVMOutboundThroughAgentDNS(t *testing.T) {
	root := t.TempDir()
	dataDir, bundleDir := filepath.Join(root, "data"), filepath.Join(root, "bundle")
	secureAddr := e2e.FreeLoopbackAddr(t)
	srv := e2e.Serve(t, "--config-dir", filepath.Join(e2e.ModuleRoot(), "examples", "library"),
		"--data-dir", dataDir, "--secure-grpc-addr", secureAddr)
	runCP(t, "vm", "bundle", "--name", vmName, "--namespace", "default", "--service-account", "postgres",
		"--ip", "10.128.0.14", "--ports", "5432", "--address", secureAddr, "-o", bundleDir, "--data-dir", dataDir)
	env, err := os.ReadFile(filepath.Join(bundleDir, vmbundle.FileClusterEnv))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(splitLines(string(env)), vmbundle.EnvDNSCapture+"=true") {
		t.Fatalf("cluster.env does not turn the agent's DNS on:\n%s", env)
	}
	dnsAddr := e2e.FreeLoopbackAddr(t)
	agent := startProcess(t, append(agentArgs(root, bundleDir), "--dns-address", dnsAddr)...)
	agent.waitLog(t, "answering DNS for mesh names", 1, 15*time.Second)

	resolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, dnsAddr)
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addrs, err := resolver.LookupHost(ctx, inventoryHost)
	want := meshname.LoopbackAddress(inventoryHost).String()
	if err != nil || len(addrs) != 1 || addrs[0] != want {
		t.Fatalf("agent DNS: %s = %v, %v; want %s", inventoryHost, addrs, err, want)
	}

	listener := vmListenerFor(t, srv.GRPCAddr, bundleDir, addrs[0], 8080)
	checkAppConnects(ctx, t, resolver, listener)
}

func splitLines(s string) []string {
	var out []string
	for line := range strings.Lines(s) {
		line = strings.TrimSpace(line)
		out = append(out, line)
	}
	return out
}

// vmListenerFor fetches the VM sidecar's config as its Envoy would (the
// bundle's bootstrap node) and checks the listener on ip:port: bound, HTTP
// routed by RDS to the inventory cluster, which has an mTLS transport socket.
func vmListenerFor(t *testing.T, grpcAddr, bundleDir, ip string, port uint32) *listenerv3.Listener {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(bundleDir, vmbundle.FileBootstrap))
	if err != nil {
		t.Fatal(err)
	}
	b, err := bootstrap.UnmarshalYAML(data)
	if err != nil {
		t.Fatal(err)
	}
	stream, lds := e2e.ADSFirst(t, grpcAddr, b.GetNode(), resourcev3.ListenerType, 10*time.Second)
	var found *listenerv3.Listener
	for _, a := range lds.GetResources() {
		l := &listenerv3.Listener{}
		if err := a.UnmarshalTo(l); err != nil {
			t.Fatal(err)
		}
		sa := l.GetAddress().GetSocketAddress()
		if sa.GetAddress() == ip && sa.GetPortValue() == port {
			found = l
		}
	}
	if found == nil || (found.GetBindToPort() != nil && !found.GetBindToPort().GetValue()) {
		t.Fatalf("the VM's LDS has no bound listener on %s:%d: %v", ip, port, found)
	}
	hcm := &hcmv3.HttpConnectionManager{}
	if err := found.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatalf("listener %s: %v", found.GetName(), err)
	}
	routeName := hcm.GetRds().GetRouteConfigName()
	rds := request(t, stream, b.GetNode().GetId(), resourcev3.RouteType, routeName)
	got := routeClusters(t, rds, inventoryHost+":8080")
	if len(got) == 0 || slices.ContainsFunc(got, func(c string) bool {
		return !strings.HasPrefix(c, "outbound|8080|") || !strings.HasSuffix(c, "|"+inventoryHost)
	}) {
		t.Errorf("RDS %s sends Host %s:8080 to %q, want clusters of %s (%s or its subsets)", routeName, inventoryHost, got, inventoryHost, inventoryCluster)
	}
	cds := request(t, stream, b.GetNode().GetId(), resourcev3.ClusterType)
	for _, a := range cds.GetResources() {
		c := &clusterv3.Cluster{}
		if err := a.UnmarshalTo(c); err != nil {
			t.Fatal(err)
		}
		if c.GetName() == inventoryCluster && c.GetTransportSocket() == nil && len(c.GetTransportSocketMatches()) == 0 {
			t.Errorf("cluster %s has no TLS transport socket: the VM would call it without mTLS", inventoryCluster)
		}
	}
	return found
}

// request asks for one type on an open ADS stream and returns its response.
func request(t *testing.T, stream e2e.ADSClient, node, typeURL string, names ...string) *discoveryv3.DiscoveryResponse {
	t.Helper()
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: nil, TypeUrl: typeURL, ResourceNames: names}); err != nil {
		t.Fatalf("ADS send %s for %s: %v", typeURL, node, err)
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("ADS %s for %s: %v", typeURL, node, err)
		}
		if resp.GetTypeUrl() == typeURL {
			return resp
		}
	}
}

// routeClusters are the clusters the routes of the virtual host that
// serves authority send to (single or weighted).
func routeClusters(t *testing.T, rds *discoveryv3.DiscoveryResponse, authority string) []string {
	t.Helper()
	for _, a := range rds.GetResources() {
		rc := &routev3.RouteConfiguration{}
		if err := a.UnmarshalTo(rc); err != nil {
			t.Fatal(err)
		}
		for _, vh := range rc.GetVirtualHosts() {
			if !slices.Contains(vh.GetDomains(), authority) {
				continue
			}
			var out []string
			for _, r := range vh.GetRoutes() {
				if c := r.GetRoute().GetCluster(); c != "" {
					out = append(out, c)
				}
				for _, w := range r.GetRoute().GetWeightedClusters().GetClusters() {
					out = append(out, w.GetName())
				}
			}
			return out
		}
	}
	return nil
}

// checkAppConnects binds the listener's address as Envoy would (no root:
// all of 127.0.0.0/8 is local) and dials the mesh name as an app does,
// resolving through the agent: the connection arrives there.
func checkAppConnects(ctx context.Context, t *testing.T, resolver *net.Resolver, l *listenerv3.Listener) {
	t.Helper()
	sa := l.GetAddress().GetSocketAddress()
	bind := net.JoinHostPort(sa.GetAddress(), "8080")
	lis, err := net.Listen("tcp", bind)
	if err != nil {
		t.Fatalf("bind %s as the VM's Envoy would: %v", bind, err)
	}
	defer lis.Close()
	accepted := make(chan net.Addr, 1)
	go func() {
		if c, err := lis.Accept(); err == nil {
			accepted <- c.LocalAddr()
			c.Close()
		}
	}()
	d := net.Dialer{Resolver: resolver}
	c, err := d.DialContext(ctx, "tcp", inventoryHost+":8080")
	if err != nil {
		t.Fatalf("app dial %s:8080: %v", inventoryHost, err)
	}
	defer c.Close()
	select {
	case got := <-accepted:
		if got.String() != bind {
			t.Errorf("the app's connection arrived at %s, want %s", got, bind)
		}
	case <-ctx.Done():
		t.Fatalf("no connection at %s", bind)
	}
}
