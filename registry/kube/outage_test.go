package kube_test

import (
	"context"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/librarymesh/controlplane/registry"
)

// While the API server is down the store keeps what it had; after it comes
// back the informers resync and later changes are applied.
func TestAPIServerOutage(t *testing.T) {
	e := env.Need(t)
	ns := newNamespace(t, e)
	f := startSource(t, e, ns)
	ctx := t.Context()
	ses := e.Istio.NetworkingV1().ServiceEntries(ns)
	for _, se := range []struct{ name, addr string }{{"db", "10.2.3.1"}, {"cache", "10.2.3.2"}} {
		host := se.name + ".example.internal"
		if _, err := ses.Create(ctx, makeServiceEntry(ns, se.name, host, 80, se.addr), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	before := f.waitView(t, "entries before the outage", func(v registry.View) bool {
		return len(v.Endpoints("db.example.internal")) == 1 && len(v.Endpoints("cache.example.internal")) == 1
	})

	stopAPIServer(t, e.StopAPIServer, func(ctx context.Context) error {
		_, err := e.Kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return err
	})
	down := time.Now()
	// The informers' watches break and their relists fail meanwhile.
	time.Sleep(3 * time.Second)
	during := f.store.View()
	if during.Revision() != before.Revision() || !slices.Equal(hostnames(during), hostnames(before)) {
		t.Errorf("store changed during the outage: revision %d -> %d, services %v -> %v",
			before.Revision(), during.Revision(), hostnames(before), hostnames(during))
	}
	if !f.source.HasSynced() {
		t.Error("HasSynced is false during the outage")
	}
	if err := e.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	t.Logf("API server was down for %s", time.Since(down).Round(time.Millisecond))
	applyAfterRestart(t, f, ns)
}

// stopAPIServer stops the server and checks that a request fails.
func stopAPIServer(t *testing.T, stop func() error, probe func(context.Context) error) {
	t.Helper()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if probe(ctx) == nil {
		t.Fatal("the API server still answers")
	}
}

func applyAfterRestart(t *testing.T, f *fixture, ns string) {
	t.Helper()
	ctx := t.Context()
	ses := env.Istio.NetworkingV1().ServiceEntries(ns)
	begin := time.Now()
	db, err := ses.Get(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	db.Spec.Endpoints[0].Address = "10.2.3.9"
	if _, err := ses.Update(ctx, db, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := ses.Delete(ctx, "cache", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := ses.Create(ctx, makeServiceEntry(ns, "queue", "queue.example.internal", 80, "10.2.3.3"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitView(t, "changes made after the restart", func(v registry.View) bool {
		return slices.Equal(addresses(v.Endpoints("db.example.internal")), []string{"10.2.3.9"}) &&
			v.Service("cache.example.internal") == nil &&
			slices.Equal(addresses(v.Endpoints("queue.example.internal")), []string{"10.2.3.3"})
	})
	t.Logf("changes after the restart applied in %s", time.Since(begin).Round(time.Millisecond))
}
