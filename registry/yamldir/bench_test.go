package yamldir_test

import (
	"fmt"
	"testing"

	"github.com/librarymesh/controlplane/internal/loadtest"
	"github.com/librarymesh/controlplane/registry"
	"github.com/librarymesh/controlplane/registry/yamldir"
)

// BenchmarkLoadScenario is the YAML part of the cold start: the folder of
// scenario S (1000 services: 500 Services with an EndpointSlice and 4 Pods,
// 500 ServiceEntries with 2 VMs; 1001 files) and smaller and larger ones,
// loaded into an empty store. Its time should grow linearly with services.
func BenchmarkLoadScenario(b *testing.B) {
	for _, n := range []int{250, 500, 1000, 2000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			if err := loadtest.WriteMeshForBench(dir, n); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				s := registry.NewStore(nil)
				if ps := yamldir.Load(dir, s); len(ps) > 0 {
					b.Fatalf("problems: %v", ps)
				}
				if got := len(s.View().Services()); got != n {
					b.Fatalf("loaded %d services, want %d", got, n)
				}
			}
		})
	}
}
