package deploy_test

import (
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/librarymesh/controlplane/internal/e2e"
)

// adsStream opens an ADS stream to addr as a sidecar in ns, asks for
// clusters and waits for the first response. Its channel gets the error
// that ends the stream.
func adsStream(t *testing.T, addr, ns string) <-chan error {
	t.Helper()
	node := &corev3.Node{Id: "sidecar~192.0.2.10~app-1." + ns + "~" + ns + ".svc.cluster.local", Cluster: "app." + ns}
	stream, _ := e2e.ADSFirst(t, addr, node, resourcev3.ClusterType, 10*time.Second)
	ended := make(chan error, 1)
	go func() {
		for {
			if _, err := stream.Recv(); err != nil {
				ended <- err
				return
			}
		}
	}()
	return ended
}
