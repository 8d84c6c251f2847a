package kube_test

import (
	"strings"
	"testing"

	networkingapi "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	networkingv1beta1 "istio.io/client-go/pkg/apis/networking/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/librarymesh/controlplane/registry"
)

// A VirtualService written as v1beta1 reaches the store through the v1
// informer, and a destination to a host no service has is a problem
// naming ns/name and the field; a bad regex refuses the update and keeps
// the last good version.
func TestVirtualServiceReachesTheStore(t *testing.T) {
	e := env.Need(t)
	ns := newNamespace(t, e)
	f := startSource(t, e, ns)
	ctx := t.Context()
	vs := &networkingv1beta1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db"},
		Spec: networkingapi.VirtualService{Hosts: []string{"db"}, Http: []*networkingapi.HTTPRoute{{
			Match: []*networkingapi.HTTPMatchRequest{{Uri: &networkingapi.StringMatch{
				MatchType: &networkingapi.StringMatch_Prefix{Prefix: "/v1"}}}},
			Route: []*networkingapi.HTTPRouteDestination{{Destination: &networkingapi.Destination{Host: "nowhere"}}},
		}}}}
	created, err := e.Istio.NetworkingV1beta1().VirtualServices(ns).Create(ctx, vs, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v := f.waitView(t, "virtual service", func(v registry.View) bool { return len(v.VirtualServices()) == 1 })
	got := v.VirtualServices()[0]
	if want := "db." + ns + ".svc.cluster.local"; got.Name != "db" || len(got.Hosts) != 1 || got.Hosts[0] != want || got.Created.IsZero() {
		t.Errorf("VirtualService = %+v, want host %s and a creation time", got, want)
	}
	var found bool
	for _, p := range f.store.Problems() {
		found = found || p.Source == ns+"/db" && p.Reason == registry.ReasonUnknownHost && p.Field == "spec.http[0].route[0].destination"
	}
	if !found {
		t.Errorf("problems = %v, want UnknownHost for %s/db", f.store.Problems(), ns)
	}
	bad := &networkingv1.VirtualService{ObjectMeta: created.ObjectMeta, Spec: *created.Spec.DeepCopy()}
	bad.Spec.Http[0].Match[0].Uri = &networkingapi.StringMatch{MatchType: &networkingapi.StringMatch_Regex{Regex: "(["}}
	if _, err := e.Istio.NetworkingV1().VirtualServices(ns).Update(ctx, bad, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("the API server should accept the update: %v", err)
	}
	var msg string
	waitFor(t, "Warning Event InvalidRegex on VirtualService db", func() bool {
		list, err := e.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
			FieldSelector: "involvedObject.name=db,type=Warning,reason=InvalidRegex"})
		if err != nil || len(list.Items) == 0 {
			return false
		}
		msg = list.Items[0].Message
		return list.Items[0].InvolvedObject.Kind == "VirtualService"
	})
	if !strings.Contains(msg, "spec.http[0].match[0].uri.regex") {
		t.Errorf("event message %q does not name the field", msg)
	}
	if m := f.store.View().VirtualServices()[0].HTTP[0].Matches[0].URI; m == nil || m.Value != "/v1" {
		t.Errorf("the last good version is not in force: uri match %+v", m)
	}
}
