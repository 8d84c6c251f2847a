package statuspage_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/librarymesh/controlplane/registry"
	"github.com/librarymesh/controlplane/server"
	"github.com/librarymesh/controlplane/server/statuspage"
)

// nackError is what the NACKing test proxy says of every EDS version.
const nackError = "test proxy rejects ClusterLoadAssignment: weight out of range"

// meshStore makes a store with n TCP services of two ready pod endpoints.
func meshStore(t testing.TB, n int) *registry.Store {
	store := registry.NewStore(slog.New(slog.DiscardHandler))
	for i := range n {
		name := fmt.Sprintf("svc-%d", i)
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
			Spec: corev1.ServiceSpec{ClusterIP: fmt.Sprintf("10.96.%d.%d", i/250, i%250+1),
				Ports: []corev1.ServicePort{{Name: "tcp", Port: 5000, Protocol: corev1.ProtocolTCP}}},
		}
		es := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: name + "-x", Namespace: "default", Labels: map[string]string{"kubernetes.io/service-name": name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr("tcp"), Port: ptr(int32(5000))}},
		}
		for j := range 2 {
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
				Addresses: []string{fmt.Sprintf("10.10.%d.%d", i, j+1)}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(j == 0)},
			})
		}
		for _, obj := range []runtime.Object{svc, es} {
			if ps := store.Upsert("test", obj); len(ps) > 0 {
				t.Fatal(ps)
			}
		}
	}
	return store
}

func ptr[T any](v T) *T { return &v }

// fixture is a running server with its status page.
type fixture struct {
	srv   *server.Server
	store *registry.Store
	base  string // http://127.0.0.1:PORT
	cc    *grpc.ClientConn
}

func start(t testing.TB, store *registry.Store) *fixture {
	srv, err := server.New(server.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Registry: store,
		Debounce: 10 * time.Millisecond, ShutdownGrace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	page, err := statuspage.New(statuspage.Config{Server: srv, Model: store, Replica: "cp-0", Version: "test",
		Sources: []statuspage.Source{{Name: "test store", Synced: func() bool { return true }}}})
	if err != nil {
		t.Fatal(err)
	}
	srv.SetStatusPage(page)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Start: %v", err)
		}
	})
	cc, err := grpc.NewClient(srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	f := &fixture{srv: srv, store: store, base: "http://" + srv.HTTPAddr().String(), cc: cc}
	f.waitFor(t, "first push", func() bool { n, _ := srv.Pushes(); return n > 0 })
	return f
}

func nodeID(i int) string {
	return fmt.Sprintf("sidecar~10.200.%d.%d~pod-%d.default~default.svc.cluster.local", i/250, i%250, i)
}

// proxy runs an ADS stream that subscribes to CDS, EDS and LDS like Envoy
// and ACKs every response, or NACKs EDS ones when nack is set.
func (f *fixture) proxy(t testing.TB, id string, nack bool) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(f.cc).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	md, _ := structpb.NewStruct(map[string]any{"NAMESPACE": "default", "SERVICE_ACCOUNT": "sa-" + id[len(id)-5:]})
	for _, typeURL := range []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType} {
		if err := st.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: id, Metadata: md}, TypeUrl: typeURL}); err != nil {
			t.Fatal(err)
		}
	}
	go func() {
		for {
			resp, err := st.Recv()
			if err != nil {
				return
			}
			req := &discoveryv3.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
			if nack && resp.GetTypeUrl() == resourcev3.EndpointType {
				req.VersionInfo = ""
				req.ErrorDetail = &status.Status{Code: 3, Message: nackError}
			}
			if st.Send(req) != nil {
				return
			}
		}
	}()
}

func (f *fixture) get(t testing.TB, path string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(f.base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// proxyList is the part of /api/proxies the tests read.
type proxyList struct {
	Total, Matched, Page, Pages int
	ByState                     map[string]int
	Rows                        []struct {
		Connection, ID, State, Identity, Replica string
		Types                                    []struct{ Type, State, Error string }
	}
}

func (f *fixture) proxies(t testing.TB, query string) proxyList {
	t.Helper()
	_, body := f.get(t, "/api/proxies"+query)
	var l proxyList
	if err := json.Unmarshal([]byte(body), &l); err != nil {
		t.Fatalf("/api/proxies%s: %v\n%s", query, err, body)
	}
	return l
}

func (f *fixture) waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// connectProxies connects n ACKing proxies and one NACKing one (the last
// ID) and waits until the page shows n SYNCED and one NACKED.
func (f *fixture) connectProxies(t testing.TB, n int) {
	for i := range n {
		f.proxy(t, nodeID(i), false)
	}
	f.proxy(t, nodeID(n), true)
	f.waitFor(t, "every proxy synced or NACKED", func() bool {
		l := f.proxies(t, "?size=1")
		return l.ByState["SYNCED"] == n && l.ByState["NACKED"] == 1
	})
}
