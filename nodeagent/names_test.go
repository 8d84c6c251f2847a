package nodeagent

import (
	"net/netip"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

func listenerResponse(t testing.TB, addrs ...string) *discoveryv3.DiscoveryResponse {
	resp := &discoveryv3.DiscoveryResponse{TypeUrl: resourcev3.ListenerType, VersionInfo: "v1", Nonce: "n1"}
	for _, a := range addrs {
		l := &listenerv3.Listener{Name: a, Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: a, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 8080}}}}}
		r, err := anypb.New(l)
		if err != nil {
			t.Fatal(err)
		}
		resp.Resources = append(resp.Resources, r)
	}
	return resp
}

// Only listeners on service loopback addresses count; a resource that is
// not a Listener is an error.
func TestBoundLoopbacks(t *testing.T) {
	got, err := boundLoopbacks(listenerResponse(t, "127.161.204.16", "0.0.0.0", "10.0.0.5", "127.0.0.1", "127.255.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !got[netip.MustParseAddr("127.161.204.16")] || !got[netip.MustParseAddr("127.255.0.1")] {
		t.Errorf("bound = %v, want 127.161.204.16 and 127.255.0.1", got)
	}
	bad := listenerResponse(t)
	junk, _ := anypb.New(&corev3.Node{Id: "x"})
	bad.Resources = append(bad.Resources, junk)
	if _, err := boundLoopbacks(bad); err == nil {
		t.Error("a Node in an LDS response was accepted")
	}
}

// FuzzBoundLoopbacks: any LDS response bytes give an error or addresses
// in the loopback prefix only.
func FuzzBoundLoopbacks(f *testing.F) {
	for _, addrs := range [][]string{{"127.161.204.16"}, {"0.0.0.0", "::1"}, {"127.128.0.0", "127.255.255.255", "not an address"}} {
		b, err := proto.Marshal(listenerResponse(f, addrs...))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		resp := &discoveryv3.DiscoveryResponse{}
		if proto.Unmarshal(data, resp) != nil {
			return
		}
		got, err := boundLoopbacks(resp)
		if err != nil {
			return
		}
		for a := range got {
			if !loopbackPrefix.Contains(a) {
				t.Fatalf("%s is not a service loopback address", a)
			}
		}
	})
}
