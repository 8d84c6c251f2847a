package snapshot

import (
	"net/netip"
	"slices"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
)

// FuzzParseProxy feeds node IDs with node metadata (as JSON) to ParseProxy:
// it must never panic, and an accepted proxy must hold what the node said:
// distinct canonical IPs led by the node ID's, and one namespace.
func FuzzParseProxy(f *testing.F) {
	id := "sidecar~10.0.0.5~vm-1.prod~prod.svc.cluster.local"
	for _, s := range []struct{ id, md string }{
		{id, `{}`},
		{id, `{"NAMESPACE":"prod","SERVICE_ACCOUNT":"db","LABELS":{"app":"db"},"INSTANCE_IPS":"10.0.0.5, fd00::5,10.0.0.6"}`},
		{id, `{"NAMESPACE":"other"}`},
		{id, `{"INSTANCE_IPS":"10.0.0.5,not-an-ip"}`},
		{id, `{"LABELS":{"app":1}}`},
		{id, `{"LABELS":"app=db"}`},
		{id, `{"GENERATOR":"grpc","ISTIO_VERSION":1.28}`},
		{"router~fd00::1~gw.istio-system~istio-system.svc.cluster.local", `{"INSTANCE_IPS":"fd00:0::1"}`},
		{"sidecar~10.0.0.5~pod~ns", `{}`},
		{"", `{}`},
	} {
		f.Add(s.id, []byte(s.md))
	}
	f.Fuzz(func(t *testing.T, id string, mdJSON []byte) {
		md := &structpb.Struct{}
		if err := protojson.Unmarshal(mdJSON, md); err != nil {
			md = nil
		}
		p, err := ParseProxy(&corev3.Node{Id: id, Metadata: md})
		if err != nil {
			return
		}
		if p.ID != id || len(p.IPs) == 0 || p.Namespace == "" || p.Name == "" {
			t.Fatalf("ParseProxy(%q) = %+v: missing ID, IP, name or namespace", id, p)
		}
		if p.Metadata.Namespace != "" && p.Metadata.Namespace != p.Namespace {
			t.Fatalf("namespace %q accepted with metadata NAMESPACE %q", p.Namespace, p.Metadata.Namespace)
		}
		for i, s := range p.IPs {
			a, err := netip.ParseAddr(s)
			if err != nil || a.String() != s || slices.Contains(p.IPs[:i], s) {
				t.Fatalf("IPs %q: %q is not a new canonical IP", p.IPs, s)
			}
		}
	})
}
