package server

import (
	"fmt"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/librarymesh/controlplane/registry"
)

// endpointPort is the port of the first endpoint of an EDS resource.
func endpointPort(t *testing.T, a *anypb.Any) uint32 {
	t.Helper()
	var cla endpointv3.ClusterLoadAssignment
	if err := a.UnmarshalTo(&cla); err != nil {
		t.Fatal(err)
	}
	return cla.GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetPortValue()
}

// TestAnswerReleasesWhatChangedMeanwhile: the stream's reader takes in a
// proxy's ACKs itself (xdsStream.answer). A change made while a response
// waits for its ACK is sent once the ACK comes, and only then; an ACK with
// nothing new after it sends nothing; a change after it goes out at once.
// SotW and delta.
func TestAnswerReleasesWhatChangedMeanwhile(t *testing.T) {
	const cluster = "outbound|8080||svc.test"
	for _, delta := range []bool{false, true} {
		t.Run(fmt.Sprintf("delta=%v", delta), func(t *testing.T) {
			reg := newFakeRegistry(defaultWorld())
			s := startServer(t, reg)
			// next returns the next EDS response's endpoint port and nonce;
			// ack answers a nonce.
			var next func() (uint32, string)
			var ack func(nonce string)
			var quiet func() int
			if delta {
				st, rx := deltaStream(t, s)
				if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node(podNodeID), TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: []string{cluster}}); err != nil {
					t.Fatal(err)
				}
				next = func() (uint32, string) {
					resp, err := rx.next(5 * time.Second)
					if err != nil || len(resp.GetResources()) != 1 {
						t.Fatalf("want a delta EDS response with one resource, got %v (%v)", resp, err)
					}
					return endpointPort(t, resp.GetResources()[0].GetResource()), resp.GetNonce()
				}
				ack = func(nonce string) {
					if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResponseNonce: nonce}); err != nil {
						t.Fatal(err)
					}
				}
				quiet = func() int { return rx.count(300 * time.Millisecond) }
			} else {
				st, rx := sotwStream(t, s)
				if err := st.Send(&discoveryv3.DiscoveryRequest{Node: node(podNodeID), TypeUrl: resourcev3.EndpointType, ResourceNames: []string{cluster}}); err != nil {
					t.Fatal(err)
				}
				var version string
				next = func() (uint32, string) {
					resp, err := rx.next(5 * time.Second)
					if err != nil || len(resp.GetResources()) != 1 {
						t.Fatalf("want a SotW EDS response with one resource, got %v (%v)", resp, err)
					}
					version = resp.GetVersionInfo()
					return endpointPort(t, resp.GetResources()[0]), resp.GetNonce()
				}
				ack = func(nonce string) {
					if err := st.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: []string{cluster}, VersionInfo: version, ResponseNonce: nonce}); err != nil {
						t.Fatal(err)
					}
				}
				quiet = func() int { return rx.count(300 * time.Millisecond) }
			}
			move := func(port int) {
				w := defaultWorld()
				w.backend = fmt.Sprintf("127.0.0.1:%d", port)
				reg.set(w, registry.Change{Hostnames: []string{w.host}, EndpointsOnly: true})
			}

			port, nonce := next()
			if port != 9 {
				t.Fatalf("first response: port %d, want 9", port)
			}
			move(10) // while the first response waits for its ACK
			if n := quiet(); n != 0 {
				t.Fatalf("%d responses before the pending one was ACKed, want none", n)
			}
			ack(nonce)
			if port, nonce = next(); port != 10 {
				t.Fatalf("after the ACK: port %d, want 10 (the change made meanwhile)", port)
			}
			ack(nonce)
			if n := quiet(); n != 0 {
				t.Fatalf("%d responses after an ACK of the current config, want none", n)
			}
			move(11)
			if port, nonce = next(); port != 11 {
				t.Fatalf("after a change: port %d, want 11", port)
			}
			ack(nonce)
			if n := quiet(); n != 0 {
				t.Fatalf("%d responses after the last ACK, want none", n)
			}
		})
	}
}
