package autoregister_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	networkingapi "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/librarymesh/controlplane/registry"
	"github.com/librarymesh/controlplane/registry/autoregister"
)

const (
	grace = 300 * time.Millisecond
	host  = "pg.default.svc.cluster.local"
)

func setup(t *testing.T, limit int) (*registry.Store, *autoregister.Controller) {
	t.Helper()
	store := registry.NewStore(nil)
	g := &networkingv1.WorkloadGroup{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "pg"},
		Spec: networkingapi.WorkloadGroup{Template: &networkingapi.WorkloadEntry{ServiceAccount: "postgres", Ports: map[string]uint32{"tcp": 5432}},
			Metadata: &networkingapi.WorkloadGroup_ObjectMeta{Labels: map[string]string{"app": "pg"}},
			Probe: &networkingapi.ReadinessProbe{HealthCheckMethod: &networkingapi.ReadinessProbe_TcpSocket{
				TcpSocket: &networkingapi.TCPHealthCheckConfig{Port: 5432}}}}}
	se := &networkingv1.ServiceEntry{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "pg"},
		Spec: networkingapi.ServiceEntry{Hosts: []string{host}, Resolution: networkingapi.ServiceEntry_STATIC,
			Ports:            []*networkingapi.ServicePort{{Number: 5432, Name: "tcp", Protocol: "TCP"}},
			WorkloadSelector: &networkingapi.WorkloadSelector{Labels: map[string]string{"app": "pg"}}}}
	manual := &networkingv1.WorkloadEntry{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "pg-manual"},
		Spec: networkingapi.WorkloadEntry{Address: "10.0.0.9", Labels: map[string]string{"app": "pg"}, ServiceAccount: "postgres"}}
	for _, o := range []runtime.Object{g, se, manual} {
		if ps := store.Upsert("file.yaml", o); len(ps) > 0 {
			t.Fatal(ps)
		}
	}
	c, err := autoregister.New(autoregister.Config{Backend: autoregister.NewStoreBackend(store), Instance: "replica-1",
		GracePeriod: grace, MaxWorkloads: limit,
		Groups: func(ns, name string) *registry.WorkloadGroup { return store.View().WorkloadGroup(ns, name) }})
	if err != nil {
		t.Fatal(err)
	}
	return store, c
}

func vm(ip, sa string) autoregister.Workload {
	return autoregister.Workload{ProxyID: "sidecar~" + ip + "~vm.default~default.svc.cluster.local", Group: "pg",
		Namespace: "default", IP: ip, ServiceAccount: sa}
}

// endpoints returns the host's endpoints by address.
func endpoints(s *registry.Store) map[string]*registry.Endpoint {
	out := map[string]*registry.Endpoint{}
	for _, ep := range s.View().Endpoints(host) {
		out[ep.Address] = ep
	}
	return out
}

func TestRegisterHealthAndGracePeriod(t *testing.T) {
	store, c := setup(t, 10)
	ctx := context.Background()
	s1, err := c.Connect(ctx, vm("10.0.0.1", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	s2, err := c.Connect(ctx, vm("10.0.0.1", "postgres")) // Envoy and the agent: two connections
	if err != nil {
		t.Fatal(err)
	}
	ep := endpoints(store)["10.0.0.1"]
	if ep == nil || ep.Workload != "WorkloadEntry default/pg-10.0.0.1" || !ep.Unhealthy || ep.ServiceAccount != "postgres" {
		t.Fatalf("endpoint = %+v, want the auto-registered entry, unhealthy until its first report", ep)
	}
	if err := s1.Health(ctx, true, ""); err != nil {
		t.Fatal(err)
	}
	if ep := endpoints(store)["10.0.0.1"]; ep.Unhealthy {
		t.Errorf("healthy report: endpoint still unhealthy")
	}
	if err := s1.Health(ctx, false, "connection refused"); err != nil {
		t.Fatal(err)
	}
	if ep := endpoints(store)["10.0.0.1"]; !ep.Unhealthy {
		t.Errorf("unhealthy report: endpoint healthy")
	}
	s1.Close()
	time.Sleep(2 * grace)
	if endpoints(store)["10.0.0.1"] == nil {
		t.Fatal("removed while a connection is still open")
	}
	s2.Close()
	if endpoints(store)["10.0.0.1"] == nil {
		t.Fatal("removed before the grace period")
	}
	deadline := time.Now().Add(10 * grace)
	for endpoints(store)["10.0.0.1"] != nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if endpoints(store)["10.0.0.1"] != nil {
		t.Fatal("not removed after the grace period")
	}
	if endpoints(store)["10.0.0.9"] == nil {
		t.Error("the manual WorkloadEntry was touched")
	}
}

func TestReconnectWithinGraceKeepsEntry(t *testing.T) {
	store, c := setup(t, 10)
	s, err := c.Connect(context.Background(), vm("10.0.0.2", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	time.Sleep(grace / 3)
	s, err = c.Connect(context.Background(), vm("10.0.0.2", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	time.Sleep(2 * grace)
	if endpoints(store)["10.0.0.2"] == nil {
		t.Fatal("a reconnect within the grace period must keep the entry")
	}
}

func TestRefusals(t *testing.T) {
	_, c := setup(t, 2)
	ctx := context.Background()
	tests := []struct {
		name string
		w    autoregister.Workload
		code codes.Code
		want string
	}{
		{"identity mismatch", vm("10.0.1.1", "intruder"), codes.PermissionDenied, "WorkloadGroup default/pg runs as service account default/postgres, but the caller proved default/intruder"},
		{"no identity", vm("10.0.1.2", ""), codes.Unauthenticated, "needs a proven identity"},
		{"no group", func() autoregister.Workload { w := vm("10.0.1.3", "postgres"); w.Group = "nope"; return w }(), codes.FailedPrecondition, "no WorkloadGroup default/nope"},
		{"another group", func() autoregister.Workload { w := vm("10.0.0.9", "postgres"); w.Group = "pg-manual-x"; return w }(), codes.FailedPrecondition, "no WorkloadGroup"},
	}
	for _, tc := range tests {
		_, err := c.Connect(ctx, tc.w)
		if status.Code(err) != tc.code || !contains(err, tc.want) {
			t.Errorf("%s: error %v, want %s with %q", tc.name, err, tc.code, tc.want)
		}
	}
	// A flood of distinct IPs: two are registered, the third is refused.
	for i, ip := range []string{"10.0.2.1", "10.0.2.2", "10.0.2.3"} {
		_, err := c.Connect(ctx, vm(ip, "postgres"))
		if i < 2 && err != nil {
			t.Fatalf("connect %s: %v", ip, err)
		}
		if i == 2 && status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("connect %s past the limit: %v, want ResourceExhausted", ip, err)
		}
	}
}

func contains(err error, s string) bool {
	return err != nil && strings.Contains(err.Error(), s)
}

func TestEntryName(t *testing.T) {
	for _, tc := range []struct{ group, ip, network, want string }{
		{"pg", "10.0.0.1", "", "pg-10.0.0.1"},
		{"pg", "fd00::1", "net1", "pg-fd00--1-net1"},
	} {
		if got := autoregister.EntryName(tc.group, tc.ip, tc.network); got != tc.want {
			t.Errorf("EntryName(%q, %q, %q) = %q, want %q", tc.group, tc.ip, tc.network, got, tc.want)
		}
	}
}
