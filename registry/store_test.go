package registry_test

import (
	"fmt"
	"reflect"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/librarymesh/controlplane/registry"
)

func signalled(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestNoOpWriteKeepsRevision(t *testing.T) {
	s := registry.NewStore(nil)
	ch, cancel := s.Subscribe()
	defer cancel()
	s.Upsert("kube", makeEntry("postgres-1-vm", pgHost, "10.128.0.14"))
	if !signalled(ch) || s.View().Revision() != 1 {
		t.Fatalf("first write: revision %d", s.View().Revision())
	}
	s.Upsert("kube", makeEntry("postgres-1-vm", pgHost, "10.128.0.14")) // a resync
	if signalled(ch) || s.View().Revision() != 1 {
		t.Errorf("no-op write: signalled or revision %d", s.View().Revision())
	}
	s.ReplaceOrigin("file.yaml", nil) // nothing to remove
	if signalled(ch) || s.View().Revision() != 1 {
		t.Errorf("empty replace: signalled or revision %d", s.View().Revision())
	}
	s.Delete("kube", registry.KindServiceEntry, "default", "missing")
	if signalled(ch) || s.View().Revision() != 1 {
		t.Errorf("delete of nothing: signalled or revision %d", s.View().Revision())
	}
}

func TestChangesSince(t *testing.T) {
	s := registry.NewStore(nil)
	const inv = "inventory.default.svc.cluster.local"
	s.Upsert("kube", makeService("inventory", "10.96.0.20", svcPort("http", 8080))) // 1
	s.Upsert("kube", makeSlice("inv-1", "inventory", 8080, "10.8.0.5"))             // 2
	s.Upsert("kube", makeSlice("inv-1", "inventory", 8080, "10.8.0.5", "10.8.0.6")) // 3
	s.Upsert("kube", makePod("inv-abc", "10.8.0.7", "inventory", nil))              // 4: not an endpoint
	s.Upsert("kube", makeEntry("postgres-1-vm", pgHost, "10.128.0.14"))             // 5
	s.Delete("kube", registry.KindServiceEntry, "default", "postgres-1-vm")         // 6
	want := []registry.Change{
		{Revision: 2, Hostnames: []string{inv}, EndpointsOnly: true},
		{Revision: 3, Hostnames: []string{inv}, EndpointsOnly: true},
		{Revision: 4, Workloads: []string{"10.8.0.7"}},
		{Revision: 5, Hostnames: []string{pgHost}, Workloads: []string{"10.128.0.14"}},
		{Revision: 6, Hostnames: []string{pgHost}, Workloads: []string{"10.128.0.14"}},
	}
	if got := s.ChangesSince(1); !reflect.DeepEqual(got, want) {
		t.Errorf("changes since 1 =\n%+v\nwant\n%+v", got, want)
	}
	if got := s.ChangesSince(6); len(got) != 0 {
		t.Errorf("changes since current = %+v", got)
	}
}

func TestChangesSinceTruncated(t *testing.T) {
	s := registry.NewStore(nil, registry.WithChangeLog(2))
	for i := range 5 {
		s.Upsert("kube", makeEntry("e", pgHost, fmt.Sprintf("10.128.0.%d", i+1)))
	}
	if got := s.ChangesSince(1); len(got) != 1 || !got[0].All || got[0].Revision != 5 {
		t.Errorf("changes since 1 = %+v, want one All", got)
	}
	if got := s.ChangesSince(3); len(got) != 2 || got[0].Revision != 4 || got[0].All {
		t.Errorf("changes since 3 = %+v, want 4 and 5", got)
	}
}

func TestPolicyChange(t *testing.T) {
	s := registry.NewStore(nil)
	s.Upsert("kube", makeService("inventory", "10.96.0.20", svcPort("http", 8080)))
	yaml := []runtime.Object{makeEntry("postgres-1-vm", pgHost, "10.128.0.14")}
	s.ReplaceOrigin("dir/pg.yaml", yaml)
	rev := s.View().Revision()
	s.ReplaceOrigin("dir/pg.yaml", nil) // the file emptied: its objects go
	if s.View().Service(pgHost) != nil {
		t.Fatal("replace did not remove the entry")
	}
	if s.View().Service("inventory.default.svc.cluster.local") == nil {
		t.Fatal("replace of one origin removed another origin's object")
	}
	if got := s.ChangesSince(rev); len(got) != 1 || got[0].Hostnames[0] != pgHost || got[0].EndpointsOnly {
		t.Errorf("changes = %+v", got)
	}
}

func TestConcurrentWritersAndReaders(t *testing.T) {
	s := registry.NewStore(nil)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 50 {
				name := fmt.Sprintf("svc-%d-%d", w, i%5)
				s.Upsert("kube", makeService(name, fmt.Sprintf("10.96.%d.%d", w, i%5+1), svcPort("http", 8080)))
				s.ReplaceOrigin(fmt.Sprintf("dir/%d.yaml", w), []runtime.Object{makeEntry(name, name+".example", "10.128.0.1")})
			}
		})
	}
	wg.Go(func() {
		for range 200 {
			v := s.View()
			for _, svc := range v.Services() {
				_ = v.Endpoints(svc.Hostname)
			}
		}
	})
	wg.Wait()
	if n := len(s.View().Services()); n != 4*5+4 {
		t.Errorf("services = %d, want %d", n, 4*5+4)
	}
}

func TestUpsertBatchIsOneRevision(t *testing.T) {
	s := registry.NewStore(nil)
	ch, cancel := s.Subscribe()
	defer cancel()
	bad := makeEntry("bad", "bad.example")
	bad.Spec.Endpoints = nil
	ps := s.UpsertBatch("kube", []runtime.Object{
		makeService("inventory", "10.96.0.20", svcPort("http", 8080)),
		makeSlice("inv-1", "inventory", 8080, "10.8.0.5"),
		makeEntry("postgres-1-vm", pgHost, "10.128.0.14"),
		bad,
	})
	if len(ps) != 1 || ps[0].Reason != "NoEndpoints" {
		t.Errorf("problems = %v", ps)
	}
	if !signalled(ch) || signalled(ch) || s.View().Revision() != 1 {
		t.Errorf("revision = %d, want one signal and revision 1", s.View().Revision())
	}
	if len(s.View().Services()) != 2 || len(s.View().Endpoints("inventory.default.svc.cluster.local")) != 1 {
		t.Errorf("services = %v", s.View().Services())
	}
}

func TestUpsertNilObject(t *testing.T) {
	s := registry.NewStore(nil)
	var svc *corev1.Service
	if ps := s.Upsert("kube", svc); len(ps) != 1 || ps[0].Reason != "InvalidObject" {
		t.Errorf("problems = %v", ps)
	}
}

// TestReplaceOriginKeepsOtherOrigins empties one origin among origins that
// begin with it: only its own objects go.
func TestReplaceOriginKeepsOtherOrigins(t *testing.T) {
	origins := []string{"a", "a\x1fb", "a\x1f", "ab", "kube", "dir/a.yaml"}
	host := func(i int) string { return fmt.Sprintf("db-%d.default.svc.cluster.local", i) }
	for emptied := range origins {
		s := registry.NewStore(nil)
		for i, origin := range origins {
			// The same object key in every origin: each is an object of its own.
			if ps := s.ReplaceOrigin(origin, []runtime.Object{makeEntry("db", host(i), "10.0.0.1")}); len(ps) > 0 {
				t.Fatalf("origin %q: %v", origin, ps)
			}
		}
		s.ReplaceOrigin(origins[emptied], nil)
		for i, origin := range origins {
			if got, want := s.View().Service(host(i)) != nil, i != emptied; got != want {
				t.Errorf("after emptying origin %q: service of origin %q present = %v, want %v", origins[emptied], origin, got, want)
			}
		}
	}
}
