package snapshot

import (
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/librarymesh/controlplane/registry"
)

// VirtualServices: the unit tests' views have none (the golden case
// virtual-service covers them).
func (v *testView) VirtualServices() []*registry.VirtualService { return nil }

// Gateways and credentials: none in the unit tests' views (the golden
// gateway cases cover them).
func (v *testView) Gateways() []*registry.Gateway                        { return nil }
func (v *testView) Credential(string, string) *registry.Credential       { return nil }
func (v *testView) WorkloadGroups() []*registry.WorkloadGroup            { return nil }
func (v *testView) WorkloadGroup(string, string) *registry.WorkloadGroup { return nil }

func exact(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}

func TestRouteMatch(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   *registry.HTTPMatch
		want *routev3.RouteMatch
	}{
		{"catch-all", nil, RouteMatchPrefix("/")},
		{"exact path, no case", &registry.HTTPMatch{URI: &registry.StringMatch{Kind: registry.MatchExact, Value: "/a"}, IgnoreURICase: true},
			&routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/a"}, CaseSensitive: wrapperspb.Bool(false)}},
		{"regex path, method, present and absent headers, query",
			&registry.HTTPMatch{URI: &registry.StringMatch{Kind: registry.MatchRegex, Value: "/v[0-9]+"},
				Method:      &registry.StringMatch{Value: "POST"},
				Headers:     []registry.KeyMatch{{Name: "x-a"}, {Name: "x-b", Match: &registry.StringMatch{Value: "1"}, Without: true}},
				QueryParams: []registry.KeyMatch{{Name: "q", Match: &registry.StringMatch{Kind: registry.MatchPrefix, Value: "p"}}}},
			&routev3.RouteMatch{
				PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/v[0-9]+"}},
				Headers: []*routev3.HeaderMatcher{
					{Name: ":method", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: exact("POST")}},
					{Name: "x-a", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}},
					{Name: "x-b", InvertMatch: true, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: exact("1")}},
				},
				QueryParameters: []*routev3.QueryParameterMatcher{{Name: "q", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{
					StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "p"}}}}},
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := RouteMatch(tc.in)
			if diff := cmp.Diff(tc.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("RouteMatch (-want +got):\n%s", diff)
			}
			if err := got.ValidateAll(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestRetryPolicy(t *testing.T) {
	r := &registry.Retries{Attempts: 3, PerTryTimeout: time.Second, RetryOn: []string{"unavailable", "retriable-status-codes"}, StatusCodes: []uint32{503}}
	want := &routev3.RetryPolicy{RetryOn: "unavailable,retriable-status-codes", NumRetries: wrapperspb.UInt32(3),
		PerTryTimeout: durationpb.New(time.Second), RetriableStatusCodes: []uint32{503}}
	if diff := cmp.Diff(want, RetryPolicy(r, false), protocmp.Transform()); diff != "" {
		t.Errorf("RetryPolicy for grpc-go (-want +got):\n%s", diff)
	}
	if p := RetryPolicy(r, true); len(p.GetRetryHostPredicate()) != 1 || p.GetHostSelectionRetryMaxAttempts() != 5 {
		t.Errorf("RetryPolicy for Envoy = %v, want Istio's previous-hosts predicate", p)
	}
	// grpc-go refuses num_retries 0: attempts 0 turns retries off, as in Istio.
	if p := RetryPolicy(&registry.Retries{Attempts: 0, RetryOn: []string{"5xx"}}, false); p != nil {
		t.Errorf("RetryPolicy with attempts 0 = %v, want none", p)
	}
}

func TestHTTPFaultPercentages(t *testing.T) {
	f := HTTPFault(&registry.FaultDelay{Delay: time.Second, Percent: 0.1}, &registry.FaultAbort{GRPCStatus: 14, IsGRPC: true, Percent: 100})
	if got := f.GetDelay().GetPercentage(); got.GetNumerator() != 1000 || got.GetDenominator() != typev3.FractionalPercent_MILLION {
		t.Errorf("delay percentage = %v, want 1000 per million", got)
	}
	if got := f.GetAbort(); got.GetGrpcStatus() != 14 || got.GetPercentage().GetNumerator() != 1000000 {
		t.Errorf("abort = %v, want grpc status 14 for every request", got)
	}
	if err := f.ValidateAll(); err != nil {
		t.Error(err)
	}
	if HTTPFault(nil, nil) != nil {
		t.Error("no fault should give no config")
	}
}

// vsView is scenario S with a VirtualService per HTTP service.
type vsView struct {
	*indexedView
	vss []*registry.VirtualService
}

func (v *vsView) VirtualServices() []*registry.VirtualService { return v.vss }

// BenchmarkBuildScenarioSWithVirtualServices is BenchmarkBuildScenarioS
// with a VirtualService for each of the 500 HTTP services (a header match
// and a catch-all route of two weighted destinations): the cost of routing
// next to the default routes.
func BenchmarkBuildScenarioSWithVirtualServices(b *testing.B) {
	iv, proxies := scenarioS()
	v := &vsView{indexedView: iv}
	for _, svc := range iv.services {
		if !svc.Ports[0].Protocol.IsHTTP() {
			continue
		}
		h := svc.Hostname
		v.vss = append(v.vss, &registry.VirtualService{Namespace: "default", Name: svc.Name, Hosts: []string{h},
			HTTP: []registry.HTTPRoute{
				{Name: "canary", Matches: []registry.HTTPMatch{{Headers: []registry.KeyMatch{{Name: "x-canary", Match: &registry.StringMatch{Value: "1"}}}}},
					Route: []registry.Destination{{Host: h}}},
				{Name: "split", Route: []registry.Destination{{Host: h, Weight: 90}, {Host: "svc-0.default.svc.cluster.local", Weight: 10}}},
			}})
	}
	b.ReportAllocs()
	for b.Loop() {
		builder := NewBuilder(v, Options{})
		for _, p := range proxies {
			if _, err := builder.Build(p); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(len(proxies)), "proxies/op")
}
