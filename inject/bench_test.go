package inject

import (
	"log/slog"
	"os"
	"testing"

	"sigs.k8s.io/yaml"
)

// BenchmarkReview is one admission request for a Deployment's pod: decode,
// decide, build the sidecar, diff, check the patch applies, encode.
func BenchmarkReview(b *testing.B) {
	y, err := os.ReadFile("testdata/deployment-pod.yaml")
	if err != nil {
		b.Fatal(err)
	}
	raw, err := yaml.YAMLToJSON(y)
	if err != nil {
		b.Fatal(err)
	}
	body := reviewBody(b, "bookinfo", raw)
	logger := slog.New(slog.DiscardHandler)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Review(testConfig(), body, logger); err != nil {
			b.Fatal(err)
		}
	}
}
