package kube_test

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networkingapi "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/librarymesh/controlplane/registry"
)

// A DestinationRule with subsets and every traffic policy part passes the
// real Istio CRD's schema, reaches the store through the informer, and its
// subset that selects nothing is reported against the model.
func TestDestinationRulePolicyFromKubernetes(t *testing.T) {
	e := env.Need(t)
	ns := newNamespace(t, e)
	f := startSource(t, e, ns)
	ctx := t.Context()
	se := makeServiceEntry(ns, "db", "db.example.internal", 5432, "10.2.5.1")
	if _, err := e.Istio.NetworkingV1().ServiceEntries(ns).Create(ctx, se, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dr := &networkingv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db"},
		Spec: networkingapi.DestinationRule{Host: "db.example.internal",
			TrafficPolicy: &networkingapi.TrafficPolicy{
				LoadBalancer: &networkingapi.LoadBalancerSettings{LbPolicy: &networkingapi.LoadBalancerSettings_ConsistentHash{
					ConsistentHash: &networkingapi.LoadBalancerSettings_ConsistentHashLB{
						HashKey: &networkingapi.LoadBalancerSettings_ConsistentHashLB_UseSourceIp{UseSourceIp: true}}}},
				ConnectionPool: &networkingapi.ConnectionPoolSettings{Tcp: &networkingapi.ConnectionPoolSettings_TCPSettings{
					MaxConnections: 10, ConnectTimeout: durationpb.New(3 * time.Second)}},
				OutlierDetection: &networkingapi.OutlierDetection{Consecutive_5XxErrors: wrapperspb.UInt32(2),
					FailurePercentageThreshold: wrapperspb.UInt32(60), Interval: durationpb.New(time.Second)},
				Tls: &networkingapi.ClientTLSSettings{Mode: networkingapi.ClientTLSSettings_ISTIO_MUTUAL},
			},
			Subsets: []*networkingapi.Subset{{Name: "none", Labels: map[string]string{"role": "nothing-has-this"},
				TrafficPolicy: &networkingapi.TrafficPolicy{LoadBalancer: &networkingapi.LoadBalancerSettings{
					LbPolicy: &networkingapi.LoadBalancerSettings_Simple{Simple: networkingapi.LoadBalancerSettings_LEAST_REQUEST}}}}}}}
	if _, err := e.Istio.NetworkingV1().DestinationRules(ns).Create(ctx, dr, metav1.CreateOptions{}); err != nil {
		t.Fatalf("the Istio CRD refused the rule: %v", err)
	}
	v := f.waitView(t, "the rule and the entry", func(v registry.View) bool {
		return len(v.DestinationRules()) == 1 && len(v.Endpoints("db.example.internal")) == 1
	})
	got := v.DestinationRules()[0]
	tp := got.TrafficPolicy
	if tp == nil || tp.LoadBalancer == nil || tp.LoadBalancer.ConsistentHash == nil || !tp.LoadBalancer.ConsistentHash.UseSourceIP ||
		tp.ConnectionPool.MaxConnections != 10 || tp.ConnectionPool.ConnectTimeout != 3*time.Second ||
		*tp.OutlierDetection.FailurePercentageThreshold != 60 || got.TLS().Mode != registry.ClientTLSIstioMutual {
		t.Errorf("traffic policy = %+v", tp)
	}
	if len(got.Subsets) != 1 || got.Subsets[0].TrafficPolicy.LoadBalancer.Simple != registry.LBLeastRequest {
		t.Errorf("subsets = %+v", got.Subsets)
	}
	if !slices.ContainsFunc(f.store.Problems(), func(p registry.Problem) bool {
		return p.Reason == registry.ReasonSubsetMatchesNothing && p.Field == "spec.subsets[0].labels" && p.Object == "DestinationRule "+ns+"/db"
	}) {
		t.Errorf("problems = %v, want subset none reported against the model", f.store.Problems())
	}
}
