package snapshot

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
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
