package server

import (
	"net/http"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	statusv3 "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/librarymesh/controlplane/snapshot"
)

// debugFixture is two connected proxies in namespaces default and other.
func debugFixture(t testing.TB) *istioDebug {
	var sts []connStatus
	for _, id := range []string{
		"sidecar~10.8.0.5~inventory-abc.default~default.svc.cluster.local",
		"sidecar~10.9.0.5~web-1.other~other.svc.cluster.local",
	} {
		node := &corev3.Node{Id: id, Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
			"SERVICE_ACCOUNT": structpb.NewStringValue("default")}}}
		px, err := snapshot.ParseProxy(node)
		if err != nil {
			t.Fatal(err)
		}
		wire, err := proto.Marshal(node)
		if err != nil {
			t.Fatal(err)
		}
		st := connStatus{id: id + "-1", node: wire, proxy: px}
		st.types[0] = TypeStatus{TypeURL: xdsTypes[0], Sent: "v1", Acked: "v1", Responses: 1}
		sts = append(sts, st)
	}
	views := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(r.URL.String())) })
	return newIstioDebug(views, func() []connStatus { return sts }, "")
}

// FuzzIstioDebugRequest: any debug type, names and caller namespace give
// resources or a gRPC status error, never a panic, and a caller outside the
// root namespace never sees a proxy of another namespace.
func FuzzIstioDebugRequest(f *testing.F) {
	f.Add(istioSyncz, "", "")
	f.Add(istioSyncz, "", "default")
	f.Add(istioConfigDump, "inventory-abc.default", "other")
	f.Add(istioConfigDump, "sidecar~10.9.0.5~web-1.other~other.svc.cluster.local", "")
	f.Add(istioDebugType, "config_dump?proxyID=web-1.other", "")
	f.Add(istioDebugType, "list", "istio-system")
	f.Add(istioDebugType, "%zz?", "")
	f.Add("istio.io/debug/nonesuch", "a\x00b", "default")
	d := debugFixture(f)
	f.Fuzz(func(t *testing.T, typeURL, name, callerNS string) {
		var caller *Identity
		if callerNS != "" {
			caller = &Identity{Namespace: callerNS, ServiceAccount: "default"}
		}
		var names []string
		if name != "" {
			names = strings.Split(name, ",")
		}
		res, err := d.resources(caller, typeURL, names)
		if err != nil {
			if _, ok := status.FromError(err); !ok {
				t.Fatalf("error is not a gRPC status: %v", err)
			}
			return
		}
		if caller == nil || callerNS == snapshot.DefaultRootNamespace {
			return
		}
		for _, r := range res {
			var cc statusv3.ClientConfig
			if r.any.UnmarshalTo(&cc) == nil && !strings.HasSuffix(cc.GetNode().GetId(), "."+callerNS) {
				t.Fatalf("caller in %s sees proxy %s", callerNS, cc.GetNode().GetId())
			}
		}
	})
}

func TestIstioDebugSynczScope(t *testing.T) {
	d := debugFixture(t)
	tests := []struct {
		caller *Identity
		want   int
	}{
		{nil, 2},
		{&Identity{Namespace: "istio-system", ServiceAccount: "operator"}, 2},
		{&Identity{Namespace: "default", ServiceAccount: "default"}, 1},
		{&Identity{Namespace: "default", ServiceAccount: "someone-else"}, 0},
	}
	for _, tt := range tests {
		res, err := d.resources(tt.caller, istioSyncz, nil)
		if err != nil || len(res) != tt.want {
			t.Errorf("syncz for %+v: %d proxies, %v; want %d", tt.caller, len(res), err, tt.want)
		}
	}
	if _, err := d.resources(&Identity{Namespace: "default", ServiceAccount: "default"}, istioDebugType, []string{"syncz"}); status.Code(err).String() != "PermissionDenied" {
		t.Errorf("debug view for a non-operator: %v, want PermissionDenied", err)
	}
}
