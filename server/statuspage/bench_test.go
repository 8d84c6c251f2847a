package statuspage_test

import (
	"io"
	"net/http"
	"testing"
)

// BenchmarkStatusJSON serves the status page's JSON with 1000 proxies
// connected over real ADS streams (999 ACKing, one NACKing), next to the
// /debug JSON for the same proxies as the baseline: api/proxies is what
// the Proxies view polls (a page of 50 of all 1000, with the counts by
// state), api/proxies-all puts all 1000 rows in one answer, api/overview is
// the overview's; debug/syncz and debug/connections list all 1000 too.
// Run with: go test -run '^$' -bench StatusJSON ./server/statuspage/
func BenchmarkStatusJSON(b *testing.B) {
	f := start(b, meshStore(b, 50))
	f.connectProxies(b, 999)
	for _, bm := range []struct{ name, path string }{
		{"api/proxies", "/api/proxies"},
		{"api/proxies-all", "/api/proxies?size=1000"},
		{"api/proxies-filtered", "/api/proxies?q=pod-99&state=SYNCED"},
		{"api/overview", "/api/overview"},
		{"baseline/debug/syncz", "/debug/syncz"},
		{"baseline/debug/connections", "/debug/connections"},
	} {
		b.Run(bm.name, func(b *testing.B) {
			var n int64
			for b.Loop() {
				resp, err := http.Get(f.base + bm.path)
				if err != nil {
					b.Fatal(err)
				}
				n, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					b.Fatalf("GET %s: %d, %v", bm.path, resp.StatusCode, err)
				}
			}
			b.ReportMetric(float64(n), "bytes/resp")
		})
	}
}
