package registry_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	networkingapi "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/librarymesh/controlplane/registry"
)

// entryIn is makeEntry in namespace ns, created at created (zero: unknown).
func entryIn(ns, name, host string, created time.Time, addrs ...string) *networkingv1.ServiceEntry {
	se := makeEntry(name, host, addrs...)
	se.Namespace = ns
	se.CreationTimestamp = metav1.NewTime(created)
	for _, ep := range se.Spec.Endpoints {
		ep.ServiceAccount = name
	}
	return se
}

// TestHostOwnership checks who may serve a host: a Kubernetes Service's
// host belongs to its namespace, and of two ServiceEntries naming a host
// the older (then the first by namespace/name) wins.
func TestHostOwnership(t *testing.T) {
	const extHost = "db.example.com"
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		objs      []runtime.Object
		host      string
		wantAddrs []string
		wantSANs  []string
		// wantProblems are "Reason Object Field" of the store's problems;
		// each problem's message must contain every string of wantNames.
		wantProblems []string
		wantNames    []string
	}{{
		name: "a ServiceEntry of another namespace cannot add to a Kubernetes Service host",
		objs: []runtime.Object{
			makeService("postgres-1-vm", "10.96.0.30", svcPort("tcp", 5432)),
			entryIn("default", "postgres-1-vm", pgHost, time.Time{}, "10.128.0.14"),
			entryIn("other", "evil", pgHost, time.Time{}, "203.0.113.66"),
		},
		host:         pgHost,
		wantAddrs:    []string{"10.128.0.14"},
		wantSANs:     []string{"spiffe://cluster.local/ns/default/sa/postgres-1-vm"},
		wantProblems: []string{"HostNotOwned ServiceEntry other/evil spec.hosts[0]"},
		wantNames:    []string{"ServiceEntry other/evil", "Service default/postgres-1-vm"},
	}, {
		name: "refused even when no object of the owner names the host",
		objs: []runtime.Object{
			entryIn("other", "evil", "x.default.svc.cluster.local", time.Time{}, "203.0.113.66"),
		},
		host:         "x.default.svc.cluster.local",
		wantProblems: []string{"HostNotOwned ServiceEntry other/evil spec.hosts[0]"},
		wantNames:    []string{"Service default/x"},
	}, {
		name: "a ServiceEntry of the owning namespace merges with the Service",
		objs: []runtime.Object{
			makeService("postgres-1-vm", "10.96.0.30", svcPort("tcp", 5432)),
			entryIn("default", "postgres-1-vm", pgHost, time.Time{}, "10.128.0.14"),
		},
		host:      pgHost,
		wantAddrs: []string{"10.128.0.14"},
		wantSANs:  []string{"spiffe://cluster.local/ns/default/sa/postgres-1-vm"},
	}, {
		name: "two ServiceEntries without creation time: first by namespace/name wins",
		objs: []runtime.Object{
			entryIn("b", "db", extHost, time.Time{}, "10.0.0.2"),
			entryIn("a", "db", extHost, time.Time{}, "10.0.0.1"),
		},
		host:         extHost,
		wantAddrs:    []string{"10.0.0.1"},
		wantSANs:     []string{"spiffe://cluster.local/ns/a/sa/db"},
		wantProblems: []string{"HostConflict ServiceEntry b/db spec.hosts[0]"},
		wantNames:    []string{"ServiceEntry a/db", "first by namespace/name"},
	}, {
		name: "two ServiceEntries: the older wins whatever its name",
		objs: []runtime.Object{
			entryIn("a", "db", extHost, t0.Add(time.Hour), "10.0.0.1"),
			entryIn("b", "db", extHost, t0, "10.0.0.2"),
		},
		host:         extHost,
		wantAddrs:    []string{"10.0.0.2"},
		wantSANs:     []string{"spiffe://cluster.local/ns/b/sa/db"},
		wantProblems: []string{"HostConflict ServiceEntry a/db spec.hosts[0]"},
		wantNames:    []string{"ServiceEntry b/db", "older"},
	}, {
		name: "same creation time: namespace/name decides",
		objs: []runtime.Object{
			entryIn("a", "zz", extHost, t0, "10.0.0.1"),
			entryIn("a", "aa", extHost, t0, "10.0.0.2"),
		},
		host:         extHost,
		wantAddrs:    []string{"10.0.0.2"},
		wantSANs:     []string{"spiffe://cluster.local/ns/a/sa/aa"},
		wantProblems: []string{"HostConflict ServiceEntry a/zz spec.hosts[0]"},
		wantNames:    []string{"ServiceEntry a/aa"},
	}, {
		name: "a known creation time beats an unknown one",
		objs: []runtime.Object{
			entryIn("a", "db", extHost, time.Time{}, "10.0.0.1"),
			entryIn("b", "db", extHost, t0, "10.0.0.2"),
		},
		host:         extHost,
		wantAddrs:    []string{"10.0.0.2"},
		wantSANs:     []string{"spiffe://cluster.local/ns/b/sa/db"},
		wantProblems: []string{"HostConflict ServiceEntry a/db spec.hosts[0]"},
		wantNames:    []string{"ServiceEntry b/db"},
	}, {
		name: "the loser's workloadSelector adds no endpoints",
		objs: []runtime.Object{
			entryIn("a", "db", extHost, time.Time{}, "10.0.0.1"),
			func() runtime.Object {
				se := entryIn("b", "db", extHost, time.Time{})
				se.Spec.WorkloadSelector = &networkingapi.WorkloadSelector{Labels: map[string]string{"app": "pg"}}
				return se
			}(),
			func() runtime.Object {
				we := makeWorkloadEntry("vm", "10.0.0.9", map[string]string{"app": "pg"})
				we.Namespace = "b"
				return we
			}(),
		},
		host:         extHost,
		wantAddrs:    []string{"10.0.0.1"},
		wantSANs:     []string{"spiffe://cluster.local/ns/a/sa/db"},
		wantProblems: []string{"HostConflict ServiceEntry b/db spec.hosts[0]"},
		wantNames:    []string{"ServiceEntry a/db"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := registry.NewStore(nil)
			for _, o := range tt.objs {
				s.Upsert("kube", o)
			}
			checkHost(t, s.View(), tt.host, tt.wantAddrs, tt.wantSANs)
			var got []string
			for _, p := range s.Problems() {
				got = append(got, p.Reason+" "+p.Object+" "+p.Field)
				for _, n := range tt.wantNames {
					if !strings.Contains(p.Message, n) {
						t.Errorf("problem %q does not name %q", p.Error(), n)
					}
				}
			}
			if !slices.Equal(got, tt.wantProblems) {
				t.Errorf("problems %q, want %q", got, tt.wantProblems)
			}
		})
	}
}

func checkHost(t *testing.T, v registry.View, host string, wantAddrs, wantSANs []string) {
	t.Helper()
	var addrs []string
	for _, ep := range v.Endpoints(host) {
		addrs = append(addrs, ep.Address)
	}
	if !slices.Equal(addrs, wantAddrs) {
		t.Errorf("endpoints of %s: %v, want %v", host, addrs, wantAddrs)
	}
	var sans []string
	if svc := v.Service(host); svc != nil {
		sans = svc.ServiceAccounts
	}
	if !slices.Equal(sans, wantSANs) {
		t.Errorf("SANs of %s: %v, want %v", host, sans, wantSANs)
	}
}

// TestHostConflictFollowsTheLoser checks that a conflict's problem comes
// and goes with the objects, and that the winner changes when it goes.
func TestHostConflictFollowsTheLoser(t *testing.T) {
	const host = "db.example.com"
	s := registry.NewStore(nil)
	s.Upsert("a.yaml", entryIn("b", "db", host, time.Time{}, "10.0.0.2"))
	s.Upsert("b.yaml", entryIn("a", "db", host, time.Time{}, "10.0.0.1"))
	if ps := s.Problems(); len(ps) != 1 || ps[0].Source != "a.yaml" || ps[0].Reason != registry.ReasonHostConflict ||
		!strings.Contains(ps[0].Message, "(b.yaml)") {
		t.Fatalf("problems %v, want one conflict of a.yaml naming b.yaml", ps)
	}
	s.Delete("b.yaml", registry.KindServiceEntry, "a", "db")
	if ps := s.Problems(); len(ps) != 0 {
		t.Errorf("problems after the winner went: %v, want none", ps)
	}
	checkHost(t, s.View(), host, []string{"10.0.0.2"}, []string{"spiffe://cluster.local/ns/b/sa/db"})
}

// TestDuplicateHostAcrossFiles: the same ServiceEntry in two files is a
// conflict too (it used to merge silently).
func TestDuplicateHostAcrossFiles(t *testing.T) {
	const host = "db.example.com"
	s := registry.NewStore(nil)
	s.Apply(registry.OriginUpdate{Origin: "dir/b.yaml", Items: []registry.Item{{Object: entryIn("a", "db", host, time.Time{}, "10.0.0.2"), Source: "dir/b.yaml:1"}}})
	s.Apply(registry.OriginUpdate{Origin: "dir/a.yaml", Items: []registry.Item{{Object: entryIn("a", "db", host, time.Time{}, "10.0.0.1"), Source: "dir/a.yaml:1"}}})
	checkHost(t, s.View(), host, []string{"10.0.0.1"}, []string{"spiffe://cluster.local/ns/a/sa/db"})
	ps := s.Problems()
	if len(ps) != 1 || ps[0].Source != "dir/b.yaml:1" || !strings.Contains(ps[0].Message, "dir/a.yaml:1") {
		t.Errorf("problems %v, want one of dir/b.yaml:1 naming dir/a.yaml:1", ps)
	}
}

func TestExportTo(t *testing.T) {
	tests := []struct {
		name     string
		exportTo [][]string // per object; a Service's is its annotation
		visible  map[string]bool
		problem  string
	}{
		{name: "default: everywhere", exportTo: [][]string{nil}, visible: map[string]bool{"default": true, "other": true}},
		{name: "dot: own namespace", exportTo: [][]string{{"."}}, visible: map[string]bool{"default": true, "other": false}},
		{name: "star", exportTo: [][]string{{"*"}}, visible: map[string]bool{"default": true, "other": true}},
		{name: "listed", exportTo: [][]string{{"other"}}, visible: map[string]bool{"default": false, "other": true}},
		{name: "nowhere", exportTo: [][]string{{"~"}}, visible: map[string]bool{"default": false, "other": false}},
		{name: "merged: intersection", exportTo: [][]string{{"other", "."}, {"other"}}, visible: map[string]bool{"default": false, "other": true}},
		{name: "merged: disjoint", exportTo: [][]string{{"."}, {"other"}}, visible: map[string]bool{"default": false, "other": false}},
		{name: "invalid", exportTo: [][]string{{"Not_A_Namespace"}}, problem: "InvalidExportTo spec.exportTo[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := registry.NewStore(nil)
			se := entryIn("default", "postgres-1-vm", pgHost, time.Time{}, "10.128.0.14")
			se.Spec.ExportTo = tt.exportTo[0]
			s.Upsert("kube", se)
			if len(tt.exportTo) > 1 {
				svc := makeService("postgres-1-vm", "10.96.0.30", svcPort("tcp", 5432))
				svc.Annotations = map[string]string{registry.ExportToAnnotation: strings.Join(tt.exportTo[1], ",")}
				s.Upsert("kube", svc)
			}
			if tt.problem != "" {
				ps := s.Problems()
				if len(ps) != 1 || ps[0].Reason+" "+ps[0].Field != tt.problem {
					t.Errorf("problems %v, want %s", ps, tt.problem)
				}
				return
			}
			svc := s.View().Service(pgHost)
			for ns, want := range tt.visible {
				if got := svc.ExportedTo(ns); got != want {
					t.Errorf("exportTo %v: visible in %s = %v, want %v", svc.ExportTo, ns, got, want)
				}
			}
		})
	}
}

// TestHostConflictNamesTheWinnersLine: when the winner moves within its
// file, the loser's problem names its new line.
func TestHostConflictNamesTheWinnersLine(t *testing.T) {
	const host = "db.example.com"
	s := registry.NewStore(nil)
	apply := func(origin, source string, se *networkingv1.ServiceEntry) {
		s.Apply(registry.OriginUpdate{Origin: origin, Items: []registry.Item{{Object: se, Source: source}}})
	}
	apply("dir/a.yaml", "dir/a.yaml:1", entryIn("a", "db", host, time.Time{}, "10.0.0.1"))
	apply("dir/b.yaml", "dir/b.yaml:1", entryIn("b", "db", host, time.Time{}, "10.0.0.2"))
	apply("dir/a.yaml", "dir/a.yaml:9", entryIn("a", "db", host, time.Time{}, "10.0.0.1"))
	if ps := s.Problems(); len(ps) != 1 || !strings.Contains(ps[0].Message, "(dir/a.yaml:9)") {
		t.Errorf("problems %v, want one naming the winner at dir/a.yaml:9", ps)
	}
}

// TestAddressOwnership: a ServiceEntry that lists the address of another
// namespace's VM neither becomes that workload (the older wins, then the
// first by namespace/name, with a problem naming both) nor adds its
// services to the VM's.
func TestAddressOwnership(t *testing.T) {
	const vm, evilHost, otherHost = "10.128.0.14", "evil.aaa.svc.cluster.local", "metrics.default.svc.cluster.local"
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name         string
		objs         []runtime.Object
		wantWorkload string   // "ns/name" of WorkloadByIP(vm)
		wantServices []string // ServicesForWorkload of it
		wantProblems []string // "Reason Object Field"
	}{{
		name: "the older ServiceEntry keeps the address",
		objs: []runtime.Object{
			entryIn("default", "postgres-1-vm", pgHost, t0, vm),
			entryIn("aaa", "evil", evilHost, t0.Add(time.Hour), vm),
		},
		wantWorkload: "default/postgres-1-vm",
		wantServices: []string{pgHost},
		wantProblems: []string{"AddressConflict ServiceEntry aaa/evil spec.endpoints[0].address"},
	}, {
		name: "without creation times the first by namespace wins, and keeps only its own services",
		objs: []runtime.Object{
			entryIn("default", "postgres-1-vm", pgHost, time.Time{}, vm),
			entryIn("aaa", "evil", evilHost, time.Time{}, vm),
		},
		wantWorkload: "aaa/evil",
		wantServices: []string{evilHost},
		wantProblems: []string{"AddressConflict ServiceEntry default/postgres-1-vm spec.endpoints[0].address"},
	}, {
		name: "two ServiceEntries of one namespace share a VM",
		objs: []runtime.Object{
			entryIn("default", "postgres-1-vm", pgHost, time.Time{}, vm),
			entryIn("default", "metrics", otherHost, time.Time{}, vm),
		},
		wantWorkload: "default/metrics",
		wantServices: []string{otherHost, pgHost},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := registry.NewStore(nil)
			for _, o := range tt.objs {
				s.Upsert("kube", o)
			}
			v := s.View()
			w := v.WorkloadByIP(vm)
			if w == nil || w.Namespace+"/"+w.Name != tt.wantWorkload {
				t.Fatalf("workload at %s: %+v, want %s", vm, w, tt.wantWorkload)
			}
			var hosts []string
			for _, svc := range v.ServicesForWorkload(w) {
				hosts = append(hosts, svc.Hostname)
			}
			if !slices.Equal(hosts, tt.wantServices) {
				t.Errorf("services of %s: %v, want %v", tt.wantWorkload, hosts, tt.wantServices)
			}
			var got []string
			for _, p := range s.Problems() {
				got = append(got, p.Reason+" "+p.Object+" "+p.Field)
			}
			if !slices.Equal(got, tt.wantProblems) {
				t.Errorf("problems %q, want %q", got, tt.wantProblems)
			}
		})
	}
}
