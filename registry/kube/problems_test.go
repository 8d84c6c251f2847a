package kube_test

import (
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/librarymesh/controlplane/registry"
)

// An entry the API accepts but the registry cannot use gets a Warning Event
// naming the field, a metric, and leaves everything else alone; an invalid
// update keeps the last good version.
func TestInvalidServiceEntry(t *testing.T) {
	e := env.Need(t)
	ns := newNamespace(t, e)
	f := startSource(t, e, ns)
	ctx := t.Context()
	ses := e.Istio.NetworkingV1().ServiceEntries(ns)
	if _, err := ses.Create(ctx, makeServiceEntry(ns, "good", "good.example.internal", 80, "10.2.2.1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	before := f.waitView(t, "good entry", endpointsAre("good.example.internal", "10.2.2.1"))

	bad := makeServiceEntry(ns, "no-endpoints", "bad.example.internal", 80)
	bad.Spec.Endpoints = nil // STATIC with neither endpoints nor workloadSelector
	if _, err := ses.Create(ctx, bad, metav1.CreateOptions{}); err != nil {
		t.Fatalf("the API server should accept the entry: %v", err)
	}
	msg := waitEvent(t, ns, "no-endpoints", "NoEndpoints")
	if !strings.Contains(msg, "spec.endpoints") {
		t.Errorf("event message %q does not name the field", msg)
	}
	if got := counter(t, f.reg, "controlplane_kube_object_problems_total", "ServiceEntry", "NoEndpoints"); got != 1 {
		t.Errorf("problems counted = %v, want 1", got)
	}
	after := f.store.View()
	if after.Service("bad.example.internal") != nil {
		t.Error("the invalid entry is in the store")
	}
	if got, want := hostnames(after), hostnames(before); !slices.Equal(got, want) {
		t.Errorf("services after the invalid entry = %v, want %v", got, want)
	}
	if !slices.Equal(addresses(after.Endpoints("good.example.internal")), []string{"10.2.2.1"}) {
		t.Error("the good entry's endpoints changed")
	}
	assertLastGoodKept(t, f, ns)
}

// assertLastGoodKept breaks the good entry with an update: its previous
// version stays in the store and the update gets an Event.
func assertLastGoodKept(t *testing.T, f *fixture, ns string) {
	t.Helper()
	ctx := t.Context()
	ses := env.Istio.NetworkingV1().ServiceEntries(ns)
	good, err := ses.Get(ctx, "good", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	good.Spec.Endpoints[0].Address = "not-an-ip"
	if _, err := ses.Update(ctx, good, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("the API server should accept the update: %v", err)
	}
	waitEvent(t, ns, "good", "")
	if got := addresses(f.store.View().Endpoints("good.example.internal")); !slices.Equal(got, []string{"10.2.2.1"}) {
		t.Errorf("after an invalid update the endpoints are %v, want the last good [10.2.2.1]", got)
	}
}

func hostnames(v registry.View) []string {
	var out []string
	for _, s := range v.Services() {
		out = append(out, s.Hostname)
	}
	return out
}
