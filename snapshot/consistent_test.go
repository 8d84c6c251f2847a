package snapshot

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// decodedRDSName is what decoding the whole HCM says.
func decodedRDSName(b []byte) (string, bool) {
	h := &hcmv3.HttpConnectionManager{}
	if err := proto.Unmarshal(b, h); err != nil {
		return "", false
	}
	return h.GetRds().GetRouteConfigName(), true
}

func rdsHCM(name string) *hcmv3.HttpConnectionManager {
	return &hcmv3.HttpConnectionManager{StatPrefix: "s", RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{
		Rds: &hcmv3.Rds{ConfigSource: &corev3.ConfigSource{}, RouteConfigName: name},
	}}
}

func marshal(t testing.TB, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// hcmSeeds are encoded HCMs as the builders make them and as other
// encoders may: repeated and merged oneof fields.
func hcmSeeds(t testing.TB) map[string][]byte {
	rds := marshal(t, rdsHCM("8080"))
	inline := marshal(t, &hcmv3.HttpConnectionManager{RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{Name: "inline"}}})
	scoped := marshal(t, &hcmv3.HttpConnectionManager{RouteSpecifier: &hcmv3.HttpConnectionManager_ScopedRoutes{ScopedRoutes: &hcmv3.ScopedRoutes{Name: "scoped"}}})
	nameOnly := protowire.AppendTag(nil, hcmRdsField, protowire.BytesType)
	nameOnly = protowire.AppendBytes(nameOnly, protowire.AppendString(protowire.AppendTag(nil, rdsRouteConfigName, protowire.BytesType), "later"))
	sourceOnly := protowire.AppendTag(nil, hcmRdsField, protowire.BytesType)
	sourceOnly = protowire.AppendBytes(sourceOnly, protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), nil))
	return map[string][]byte{
		"rds":                        rds,
		"inline route":               inline,
		"scoped routes":              scoped,
		"none":                       marshal(t, &hcmv3.HttpConnectionManager{StatPrefix: "s"}),
		"rds then inline":            append(append([]byte{}, rds...), inline...),
		"inline then rds":            append(append([]byte{}, inline...), rds...),
		"rds then scoped":            append(append([]byte{}, rds...), scoped...),
		"rds merged with a new name": append(append([]byte{}, rds...), nameOnly...),
		"rds merged without a name":  append(append([]byte{}, rds...), sourceOnly...),
		"truncated":                  rds[:len(rds)-2],
	}
}

// TestScanRDSName: reading an HCM's RDS name from its bytes gives what
// decoding it gives.
func TestScanRDSName(t *testing.T) {
	for name, b := range hcmSeeds(t) {
		want, wantOK := decodedRDSName(b)
		got, ok := scanRDSName(b)
		if ok && (!wantOK || got != want) || !ok && wantOK {
			t.Errorf("%s: scan gave %q (read %v), decoding %q (decoded %v)", name, got, ok, want, wantOK)
		}
		a := &anypb.Any{TypeUrl: "type.googleapis.com/" + string(proto.MessageName(&hcmv3.HttpConnectionManager{})), Value: b}
		if got := hcmRDSName(a); got != want {
			t.Errorf("%s: hcmRDSName = %q, want %q", name, got, want)
		}
	}
	if got := hcmRDSName(&anypb.Any{TypeUrl: "type.googleapis.com/other.Type", Value: hcmSeeds(t)["rds"]}); got != "" {
		t.Errorf("an Any of another type gave RDS name %q", got)
	}
}

// FuzzScanRDSName: for any bytes that decode as an HCM, scanning them
// gives the same RDS name (bytes it cannot read are decoded instead).
func FuzzScanRDSName(f *testing.F) {
	for _, b := range hcmSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want, wantOK := decodedRDSName(b)
		got, ok := scanRDSName(b)
		if ok && wantOK && got != want {
			t.Fatalf("scan gave %q, decoding %q", got, want)
		}
	})
}

// BenchmarkConsistentWith checks a sidecar's own part against the shared
// part of scenario S, as the push path does for each proxy after each
// change.
func BenchmarkConsistentWith(b *testing.B) {
	v, proxies := scenarioS()
	builder := NewBuilder(v, Options{})
	shared, own, err := builder.BuildParts(proxies[0])
	if err != nil {
		b.Fatal(err)
	}
	if own == nil || len(own.Listeners) == 0 {
		b.Fatal("the sidecar has no listeners of its own")
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := own.ConsistentWith(shared); err != nil {
			b.Fatal(err)
		}
	}
}

func TestHCMTypeName(t *testing.T) {
	if got := string(proto.MessageName(&hcmv3.HttpConnectionManager{})); got != hcmType {
		t.Errorf("hcmType is %q, the message is named %q", hcmType, got)
	}
}

// consistencyParts are a listener fetching route configuration "r" over
// RDS, "r", an EDS cluster "c" and its assignment.
func consistencyParts(t testing.TB) *Resources {
	hcm, err := anypb.New(rdsHCM("r"))
	if err != nil {
		t.Fatal(err)
	}
	return &Resources{
		Listeners: []types.Resource{&listenerv3.Listener{Name: "l", FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{Name: "hcm", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm}}},
		}}}},
		Routes: []types.Resource{&routev3.RouteConfiguration{Name: "r"}},
		Clusters: []types.Resource{&clusterv3.Cluster{Name: "c", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
			EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{}}}},
		Endpoints: []types.Resource{&endpointv3.ClusterLoadAssignment{ClusterName: "c"}},
	}
}

// TestConsistentSince: parts that replace consistent ones are checked in
// what changed (a new listener or route list, an endpoint list of other
// names) and not in the lists they share with them.
func TestConsistentSince(t *testing.T) {
	prev := consistencyParts(t)
	if err := prev.Consistent(); err != nil {
		t.Fatal(err)
	}
	other := consistencyParts(t) // the same content in other lists
	tests := []struct {
		name    string
		change  func(r *Resources)
		wantErr string
	}{
		{"nothing changed", func(*Resources) {}, ""},
		{"endpoints rebuilt, same names", func(r *Resources) { r.Endpoints = other.Endpoints }, ""},
		{"an assignment left out", func(r *Resources) { r.Endpoints = nil }, `cluster "c" has no ClusterLoadAssignment "c"`},
		{"an assignment renamed", func(r *Resources) {
			r.Endpoints = []types.Resource{&endpointv3.ClusterLoadAssignment{ClusterName: "d"}}
		}, `cluster "c" has no ClusterLoadAssignment "c"`},
		{"the route configuration gone", func(r *Resources) { r.Routes = nil }, `names route configuration "r", which is missing`},
		{"a new listener list", func(r *Resources) {
			r.Listeners = slices.Clone(r.Listeners)
			r.Routes = []types.Resource{&routev3.RouteConfiguration{Name: "s"}}
		}, `names route configuration "r", which is missing`},
		{"a new cluster list", func(r *Resources) {
			r.Clusters = append(slices.Clone(r.Clusters), &clusterv3.Cluster{Name: "e", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}})
		}, `cluster "e" has no ClusterLoadAssignment "e"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := *prev
			tt.change(&r)
			for _, check := range []struct {
				name string
				err  error
			}{{"ConsistentSince", r.ConsistentSince(nil, prev, nil)}, {"ConsistentWith", r.ConsistentWith(nil)}} {
				if got := fmt.Sprint(check.err); tt.wantErr == "" && check.err != nil || tt.wantErr != "" && !strings.Contains(got, tt.wantErr) {
					t.Errorf("%s: %v, want %q", check.name, check.err, tt.wantErr)
				}
			}
		})
	}

	// An own part's listener may name its shared part's route: a new
	// shared route list is checked against the own listeners it keeps.
	own := &Resources{Listeners: prev.Listeners}
	base := &Resources{Routes: prev.Routes}
	if err := own.ConsistentSince(&Resources{}, own, base); err == nil {
		t.Error("the shared part lost the route configuration an own listener names, and nothing was reported")
	}

	// What prev shares is not walked again: given (wrongly) an
	// inconsistent prev, the listener it shares is not checked.
	bad := &Resources{Listeners: prev.Listeners}
	if err := bad.ConsistentWith(nil); err == nil {
		t.Fatal("a listener naming a missing route was accepted")
	}
	if err := bad.ConsistentSince(nil, bad, nil); err != nil {
		t.Errorf("the listener list shared with prev was checked again: %v", err)
	}
}

// BenchmarkConsistentAfterEndpointChange is the consistency check of one
// sidecar's parts (shared, own) of scenario S after an endpoint-only
// change: "all" checks everything again, "since" only what changed since
// the parts it had, "own-since" only the own part (what each proxy pays).
func BenchmarkConsistentAfterEndpointChange(b *testing.B) {
	v, proxies := scenarioS()
	before := NewBuilder(v, Options{})
	prevShared, prevOwn, err := before.BuildParts(proxies[0])
	if err != nil {
		b.Fatal(err)
	}
	after := before.WithEndpointChanges(v, []string{"svc-7.default.svc.cluster.local"})
	shared, own, err := after.BuildParts(proxies[0])
	if err != nil {
		b.Fatal(err)
	}
	if shared == prevShared || sameList(shared.Endpoints, prevShared.Endpoints) || !sameList(shared.Listeners, prevShared.Listeners) {
		b.Fatal("the endpoint change did not give the shared part new endpoints and the same listeners")
	}
	b.Run("all", func(b *testing.B) {
		for b.Loop() {
			if err := shared.Consistent(); err != nil {
				b.Fatal(err)
			}
			if err := own.ConsistentWith(shared); err != nil {
				b.Fatal(err)
			}
		}
	})
	// What every proxy pays: its own part against the new shared part.
	b.Run("own-since", func(b *testing.B) {
		for b.Loop() {
			if err := own.ConsistentSince(shared, prevOwn, prevShared); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("since", func(b *testing.B) {
		for b.Loop() {
			if err := shared.ConsistentSince(nil, prevShared, nil); err != nil {
				b.Fatal(err)
			}
			if err := own.ConsistentSince(shared, prevOwn, prevShared); err != nil {
				b.Fatal(err)
			}
		}
	})
}
