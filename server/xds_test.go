package server

import (
	"context"
	"strings"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statusv3 "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/librarymesh/controlplane/registry"
)

// csdsStatus returns what CSDS says of a node's type: the client status
// and the NACK error.
func csdsStatus(t *testing.T, s *Server, nodeID, typeURL string) (adminv3.ClientResourceStatus, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := statusv3.NewClientStatusDiscoveryServiceClient(dial(t, s)).FetchClientStatus(ctx, &statusv3.ClientStatusRequest{})
	if err != nil {
		t.Fatalf("CSDS: %v", err)
	}
	for _, c := range resp.GetConfig() {
		if c.GetNode().GetId() != nodeID {
			continue
		}
		for _, g := range c.GetGenericXdsConfigs() {
			if g.GetTypeUrl() == typeURL {
				return g.GetClientStatus(), g.GetErrorState().GetDetails()
			}
		}
	}
	return adminv3.ClientResourceStatus_UNKNOWN, ""
}

func waitCSDS(t *testing.T, s *Server, nodeID, typeURL string, want adminv3.ClientResourceStatus) string {
	t.Helper()
	var detail string
	waitFor(t, "CSDS "+want.String(), func() bool {
		var got adminv3.ClientResourceStatus
		got, detail = csdsStatus(t, s, nodeID, typeURL)
		return got == want
	})
	return detail
}

func TestSotWStreamReceivesAndAcks(t *testing.T) {
	s := startServer(t, newFakeRegistry(defaultWorld()))
	st, rx := sotwStream(t, s)
	if err := st.Send(&discoveryv3.DiscoveryRequest{Node: node(podNodeID), TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatal(err)
	}
	resp, err := rx.next(5 * time.Second)
	if err != nil {
		t.Fatalf("no CDS response: %v", err)
	}
	if len(resp.GetResources()) != 1 || resp.GetVersionInfo() == "" {
		t.Fatalf("CDS response: %d resources, version %q; want 1 resource and a version", len(resp.GetResources()), resp.GetVersionInfo())
	}
	ack := &discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
	if err := st.Send(ack); err != nil {
		t.Fatal(err)
	}
	waitCSDS(t, s, podNodeID, resourcev3.ClusterType, adminv3.ClientResourceStatus_ACKED)
	if n := rx.count(200 * time.Millisecond); n != 0 {
		t.Errorf("got %d responses after the ACK, want 0", n)
	}
}

// TestReconnectingSotWProxyKeepsItsNode: an Envoy that reconnects sends
// the version it holds in its first request, beside its node. The node the
// connection keeps (CSDS shows it) is that node, not the version's bytes:
// in a DiscoveryRequest the node is field 2, field 1 the version.
func TestReconnectingSotWProxyKeepsItsNode(t *testing.T) {
	s := startServer(t, newFakeRegistry(defaultWorld()))
	for _, delta := range []bool{false, true} {
		n := node(podNodeID)
		n.Cluster = "inventory.default"
		if delta {
			st, rx := deltaStream(t, s)
			if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: n, TypeUrl: resourcev3.ClusterType,
				InitialResourceVersions: map[string]string{"outbound|8080||inventory.default.svc.cluster.local": "stale"}}); err != nil {
				t.Fatal(err)
			}
			if _, err := rx.next(5 * time.Second); err != nil {
				t.Fatalf("delta: no CDS response: %v", err)
			}
		} else {
			st, rx := sotwStream(t, s)
			if err := st.Send(&discoveryv3.DiscoveryRequest{VersionInfo: "stale-version", Node: n, TypeUrl: resourcev3.ClusterType}); err != nil {
				t.Fatal(err)
			}
			if _, err := rx.next(5 * time.Second); err != nil {
				t.Fatalf("SotW: no CDS response: %v", err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := statusv3.NewClientStatusDiscoveryServiceClient(dial(t, s)).FetchClientStatus(ctx, &statusv3.ClientStatusRequest{})
		cancel()
		if err != nil {
			t.Fatalf("CSDS: %v", err)
		}
		found := 0
		for _, c := range resp.GetConfig() {
			if c.GetNode().GetId() == n.GetId() && c.GetNode().GetCluster() == n.GetCluster() {
				found++
			}
		}
		if want := map[bool]int{false: 1, true: 2}[delta]; found != want {
			var got []string
			for _, c := range resp.GetConfig() {
				got = append(got, c.GetNode().String())
			}
			t.Fatalf("delta %v: CSDS shows the proxy's node %d times, want %d; nodes: %q", delta, found, want, got)
		}
	}
}

func TestDeltaStreamReceivesAndAcks(t *testing.T) {
	reg := newFakeRegistry(defaultWorld())
	s := startServer(t, reg)
	st, rx := deltaStream(t, s)
	for _, typeURL := range []string{resourcev3.ClusterType, resourcev3.EndpointType} {
		req := &discoveryv3.DeltaDiscoveryRequest{Node: node(podNodeID), TypeUrl: typeURL}
		if typeURL == resourcev3.EndpointType {
			req.ResourceNamesSubscribe = []string{"outbound|8080||svc.test"}
		}
		if err := st.Send(req); err != nil {
			t.Fatal(err)
		}
		resp, err := rx.next(5 * time.Second)
		if err != nil {
			t.Fatalf("no delta %s response: %v", shortType(typeURL), err)
		}
		if resp.GetTypeUrl() != typeURL || len(resp.GetResources()) != 1 {
			t.Fatalf("delta response %s with %d resources, want %s with 1", resp.GetTypeUrl(), len(resp.GetResources()), typeURL)
		}
		if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typeURL, ResponseNonce: resp.GetNonce()}); err != nil {
			t.Fatal(err)
		}
		waitCSDS(t, s, podNodeID, typeURL, adminv3.ClientResourceStatus_ACKED)
	}

	w := defaultWorld()
	w.backend = "127.0.0.1:10"
	reg.set(w, registry.Change{Hostnames: []string{w.host}, EndpointsOnly: true})
	resp, err := rx.next(5 * time.Second)
	if err != nil {
		t.Fatalf("no delta response after an endpoint change: %v", err)
	}
	if resp.GetTypeUrl() != resourcev3.EndpointType {
		t.Fatalf("endpoint change sent %s, want only EDS", resp.GetTypeUrl())
	}
	if n := rx.count(300 * time.Millisecond); n != 0 {
		t.Errorf("endpoint change sent %d more responses, want only the EDS one", n)
	}
}

func TestNackedVersionIsNotResent(t *testing.T) {
	reg := newFakeRegistry(defaultWorld())
	s := startServer(t, reg)
	st, rx := sotwStream(t, s)
	if err := st.Send(&discoveryv3.DiscoveryRequest{Node: node(podNodeID), TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatal(err)
	}
	resp, err := rx.next(5 * time.Second)
	if err != nil {
		t.Fatalf("no CDS response: %v", err)
	}
	// Like a real client, NACK every response that carries the bad version.
	nack := func(r *discoveryv3.DiscoveryResponse) {
		t.Helper()
		err := st.Send(&discoveryv3.DiscoveryRequest{
			TypeUrl: resourcev3.ClusterType, ResponseNonce: r.GetNonce(),
			ErrorDetail: &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: "cluster outbound|8080||svc.test: bad"},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	nack(resp)
	resent := 0
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
		r, err := rx.next(time.Until(deadline))
		if err != nil {
			break
		}
		resent++
		nack(r)
	}
	if resent > 1 {
		t.Fatalf("the rejected version was resent %d times within 1s of a NACK, want at most 1", resent)
	}
	if detail := waitCSDS(t, s, podNodeID, resourcev3.ClusterType, adminv3.ClientResourceStatus_NACKED); !strings.Contains(detail, "bad") {
		t.Errorf("CSDS NACK detail %q does not carry the error", detail)
	}
	if got := value(t, s.metrics.nacks.WithLabelValues("cds")); got != 1 {
		t.Errorf("NACK metric = %v, want 1", got)
	}

	w := defaultWorld()
	w.connectTimeout = 2 * time.Second
	reg.set(w, registry.Change{All: true})
	resp2, err := rx.next(5 * time.Second)
	if err != nil {
		t.Fatalf("changed CDS was not sent after a NACK: %v", err)
	}
	if resp2.GetVersionInfo() == resp.GetVersionInfo() {
		t.Fatalf("resent the rejected version %q", resp.GetVersionInfo())
	}
	ack := &discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, VersionInfo: resp2.GetVersionInfo(), ResponseNonce: resp2.GetNonce()}
	if err := st.Send(ack); err != nil {
		t.Fatal(err)
	}
	waitCSDS(t, s, podNodeID, resourcev3.ClusterType, adminv3.ClientResourceStatus_ACKED)
}

// subscribeAll subscribes a SotW stream to CDS and EDS and ACKs both.
func subscribeAll(t *testing.T, st discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient, rx *receiver[*discoveryv3.DiscoveryResponse], id string) {
	t.Helper()
	for _, typeURL := range []string{resourcev3.ClusterType, resourcev3.EndpointType} {
		if err := st.Send(&discoveryv3.DiscoveryRequest{Node: node(id), TypeUrl: typeURL}); err != nil {
			t.Fatal(err)
		}
		resp, err := rx.next(5 * time.Second)
		if err != nil {
			t.Fatalf("no %s response: %v", shortType(typeURL), err)
		}
		ack := &discoveryv3.DiscoveryRequest{TypeUrl: typeURL, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
		if err := st.Send(ack); err != nil {
			t.Fatal(err)
		}
	}
}

func TestChangeResendsOnlyChangedTypes(t *testing.T) {
	reg := newFakeRegistry(defaultWorld())
	s := startServer(t, reg)
	st, rx := sotwStream(t, s)
	subscribeAll(t, st, rx, podNodeID)
	waitCSDS(t, s, podNodeID, resourcev3.EndpointType, adminv3.ClientResourceStatus_ACKED)
	builds := value(t, s.metrics.builds)

	// An endpoint change of a host the proxy does not use: no rebuild, nothing sent.
	reg.set(defaultWorld(), registry.Change{Hostnames: []string{"other.test"}, EndpointsOnly: true})
	waitPushed(t, s, reg)
	if got := value(t, s.metrics.builds); got != builds {
		t.Errorf("unrelated endpoint change rebuilt %v snapshots, want 0", got-builds)
	}
	// A change that alters nothing this proxy gets: rebuilt, not resent.
	reg.set(defaultWorld(), registry.Change{All: true})
	waitPushed(t, s, reg)
	if n := rx.count(200 * time.Millisecond); n != 0 {
		t.Errorf("a change with no effect sent %d responses, want 0", n)
	}
	// An endpoint change: EDS only.
	w := defaultWorld()
	w.backend = "127.0.0.1:10"
	reg.set(w, registry.Change{Hostnames: []string{w.host}, EndpointsOnly: true})
	resp, err := rx.next(5 * time.Second)
	if err != nil {
		t.Fatalf("no response after an endpoint change: %v", err)
	}
	if resp.GetTypeUrl() != resourcev3.EndpointType {
		t.Fatalf("endpoint change sent %s, want EDS", resp.GetTypeUrl())
	}
	if n := rx.count(300 * time.Millisecond); n != 0 {
		t.Errorf("endpoint change sent %d more responses, want only EDS", n)
	}
}

// waitPushed waits until the push loop has handled the registry's revision.
func waitPushed(t *testing.T, s *Server, reg *fakeRegistry) {
	t.Helper()
	want := reg.View().Revision()
	waitFor(t, "push", func() bool { _, rev := s.Pushes(); return rev >= want })
}

func TestMalformedNodeIDIsInvalidArgument(t *testing.T) {
	tests := []struct {
		name, id, want string
	}{
		{"empty", "", "node id is empty"},
		{"three parts", "sidecar~10.0.0.1~a.b", "has 3 parts"},
		{"bad type", "gateway~10.0.0.1~a.b~b.svc.cluster.local", `type "gateway"`},
		{"bad IP", "sidecar~10.0.0~a.b~b.svc.cluster.local", `IP "10.0.0"`},
		{"no namespace", "sidecar~10.0.0.1~inventory~default.svc.cluster.local", `"inventory" is not NAME.NAMESPACE`},
	}
	s := startServer(t, newFakeRegistry(defaultWorld()))
	for _, tt := range tests {
		t.Run("sotw/"+tt.name, func(t *testing.T) {
			st, rx := sotwStream(t, s)
			if err := st.Send(&discoveryv3.DiscoveryRequest{Node: node(tt.id), TypeUrl: resourcev3.ClusterType}); err != nil {
				t.Fatal(err)
			}
			_, err := rx.next(5 * time.Second)
			checkInvalid(t, err, tt.want)
		})
		t.Run("delta/"+tt.name, func(t *testing.T) {
			st, rx := deltaStream(t, s)
			if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node(tt.id), TypeUrl: resourcev3.ClusterType}); err != nil {
				t.Fatal(err)
			}
			_, err := rx.next(5 * time.Second)
			checkInvalid(t, err, tt.want)
		})
	}
}

func checkInvalid(t *testing.T, err error, want string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), want) {
		t.Errorf("stream ended with %v, want InvalidArgument containing %q", err, want)
	}
}

func TestDeltaNackIsNotResent(t *testing.T) {
	reg := newFakeRegistry(defaultWorld())
	s := startServer(t, reg)
	st, rx := deltaStream(t, s)
	if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node(podNodeID), TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatal(err)
	}
	resp, err := rx.next(5 * time.Second)
	if err != nil {
		t.Fatalf("no delta CDS response: %v", err)
	}
	nack := func(r *discoveryv3.DeltaDiscoveryResponse) {
		t.Helper()
		err := st.Send(&discoveryv3.DeltaDiscoveryRequest{
			TypeUrl: resourcev3.ClusterType, ResponseNonce: r.GetNonce(),
			ErrorDetail: &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: "bad cluster"},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	nack(resp)
	resent := 0
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
		r, err := rx.next(time.Until(deadline))
		if err != nil {
			break
		}
		resent++
		nack(r)
	}
	if resent > 1 {
		t.Fatalf("the rejected delta resources were resent %d times within 1s, want at most 1", resent)
	}
	if detail := waitCSDS(t, s, podNodeID, resourcev3.ClusterType, adminv3.ClientResourceStatus_NACKED); detail != "bad cluster" {
		t.Errorf("CSDS NACK detail %q, want %q", detail, "bad cluster")
	}
	w := defaultWorld()
	w.connectTimeout = 3 * time.Second
	reg.set(w, registry.Change{All: true})
	if _, err := rx.next(5 * time.Second); err != nil {
		t.Fatalf("changed CDS was not sent after a delta NACK: %v", err)
	}
}

// TestCSDSReportsTheNodeAsSent: the server keeps a proxy's node encoded,
// and CSDS gives it back whole (nested metadata, locality, user agent),
// with only the kind and connection ID added.
func TestCSDSReportsTheNodeAsSent(t *testing.T) {
	s := startServer(t, newFakeRegistry(defaultWorld()))
	md, err := structpb.NewStruct(map[string]any{
		"NAMESPACE": "default", "LABELS": map[string]any{"app": "inventory", "version": "v1"},
		"PROXY_CONFIG": map[string]any{"concurrency": 2.0, "tracing": map[string]any{"zipkin": map[string]any{"address": "zipkin:9411"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	sent := &corev3.Node{Id: podNodeID, Cluster: "inventory.default", Metadata: md, UserAgentName: "envoy",
		Locality: &corev3.Locality{Region: "us-east1", Zone: "b"}}
	st, rx := sotwStream(t, s)
	if err := st.Send(&discoveryv3.DiscoveryRequest{Node: sent, TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatal(err)
	}
	if _, err := rx.next(5 * time.Second); err != nil {
		t.Fatalf("no CDS response: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := statusv3.NewClientStatusDiscoveryServiceClient(dial(t, s)).FetchClientStatus(ctx, &statusv3.ClientStatusRequest{})
	if err != nil {
		t.Fatalf("CSDS: %v", err)
	}
	if len(resp.GetConfig()) != 1 {
		t.Fatalf("CSDS gave %d configs, want 1", len(resp.GetConfig()))
	}
	got := resp.GetConfig()[0].GetNode()
	fields := got.GetMetadata().GetFields()
	if fields[KindMetadataKey].GetStringValue() == "" || !strings.HasPrefix(fields[ConnectionMetadataKey].GetStringValue(), podNodeID+"-") {
		t.Errorf("CSDS node lacks the kind or connection ID: %v", fields)
	}
	delete(fields, KindMetadataKey)
	delete(fields, ConnectionMetadataKey)
	if !proto.Equal(got, sent) {
		t.Errorf("CSDS node differs from the node sent:\ngot  %v\nwant %v", got, sent)
	}
}
