package snapshot

import (
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
)

// TestTrustBundleMetadata: with a trust bundle ID, every cluster with a TLS
// transport socket and every filter chain with one name it (a new bundle is
// a new version of them), others do not, and the resources stay valid.
func TestTrustBundleMetadata(t *testing.T) {
	view := withSidecar(libraryView(meshStrict(), nil), "10.128.0.14")
	proxies := []*Proxy{mustProxy(t, podNodeID, nil), mustProxy(t, grpcNodeID, map[string]any{"GENERATOR": "grpc"})}
	for _, id := range []string{"", "sha256:0123456789abcdef01234567"} {
		b := NewBuilder(view, Options{TrustBundle: id})
		var marked int
		for _, p := range proxies {
			res, err := b.Build(p)
			if err != nil {
				t.Fatal(err)
			}
			marked += checkTrustMarks(t, id, res)
		}
		if id != "" && marked == 0 {
			t.Fatal("no cluster or filter chain names the trust bundle")
		}
	}
}

// checkTrustMarks checks each TLS cluster and filter chain names id and
// returns how many do.
func checkTrustMarks(t *testing.T, id string, res *Resources) int {
	t.Helper()
	n := 0
	check := func(what string, tls bool, got string, r types.Resource) {
		want := ""
		if tls {
			want = id
		}
		if got != want {
			t.Errorf("%s names trust bundle %q, want %q", what, got, want)
		}
		if got != "" {
			n++
		}
		if v, ok := r.(interface{ ValidateAll() error }); ok {
			if err := v.ValidateAll(); err != nil {
				t.Errorf("%s: %v", what, err)
			}
		}
	}
	for _, r := range res.Clusters {
		c := r.(*clusterv3.Cluster)
		tls := c.GetTransportSocket() != nil || len(c.GetTransportSocketMatches()) > 0
		check("cluster "+c.GetName(), tls, c.GetMetadata().GetFilterMetadata()[trustBundleMetadataKey].GetFields()["id"].GetStringValue(), c)
	}
	for _, r := range res.Listeners {
		l := r.(*listenerv3.Listener)
		for _, fc := range l.GetFilterChains() {
			check("listener "+l.GetName()+" chain "+fc.GetName(), fc.GetTransportSocket() != nil,
				fc.GetMetadata().GetFilterMetadata()[trustBundleMetadataKey].GetFields()["id"].GetStringValue(), l)
		}
	}
	return n
}
