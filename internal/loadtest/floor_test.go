package loadtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

func TestBatch(t *testing.T) {
	tests := []struct {
		name string
		msgs [][]byte
	}{
		{"none", nil},
		{"one empty", [][]byte{{}}},
		{"three", [][]byte{[]byte("a"), bytes.Repeat([]byte("b"), 300), []byte("cd")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeBatch(encodeBatch(tt.msgs))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.msgs) {
				t.Fatalf("got %d messages, want %d", len(got), len(tt.msgs))
			}
			for i := range got {
				if !bytes.Equal(got[i], tt.msgs[i]) {
					t.Errorf("message %d: got %q, want %q", i, got[i], tt.msgs[i])
				}
			}
		})
	}
}

func TestDecodeBatchErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"short message", "\x05abc", "message 0: length 5, only 3 bytes left"},
		{"bad prefix", "\x01a\xff", "message 1: bad length prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeBatch([]byte(tt.in))
			if err == nil || err.Error() != tt.want {
				t.Errorf("decodeBatch(%q) = %v, want %q", tt.in, err, tt.want)
			}
		})
	}
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add(encodeBatch([][]byte{[]byte("a"), []byte("bc")}))
	f.Add([]byte("\x05abc"))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		msgs, err := decodeBatch(b)
		if err != nil {
			return
		}
		if !bytes.Equal(encodeBatch(msgs), b) {
			t.Errorf("decoded %d messages that do not encode back to the input", len(msgs))
		}
	})
}

var floorAddr = regexp.MustCompile(`msg="serving (gRPC|HTTP)" addr=(\S+)`)

// TestFloorSendsToEveryStream runs the floor server and three SotW ADS
// streams: one push reaches each stream whole and in order. A delta ADS
// stream is served the same way; other services are refused.
func TestFloorSendsToEveryStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var logs syncBuffer
	errc := make(chan error, 1)
	go func() {
		errc <- RunFloor(ctx, FloorConfig{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	}()
	p := &process{}
	for p.grpcAddr == "" || p.httpAddr == "" {
		select {
		case err := <-errc:
			t.Fatalf("floor ended: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
		for _, m := range floorAddr.FindAllStringSubmatch(logs.String(), -1) {
			if m[1] == "gRPC" {
				p.grpcAddr = m[2]
			} else {
				p.httpAddr = m[2]
			}
		}
	}
	cc, err := grpc.NewClient(p.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	const n = 3
	var streams []discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	for range n {
		st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&discoveryv3.DiscoveryRequest{TypeUrl: cdsType}); err != nil {
			t.Fatal(err)
		}
		streams = append(streams, st)
	}
	if err := waitStreams(ctx, p, n, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	want := []*discoveryv3.DiscoveryResponse{{TypeUrl: cdsType, VersionInfo: "1", Nonce: "a"}, {TypeUrl: edsType, VersionInfo: "2", Nonce: "b"}}
	var msgs [][]byte
	for _, m := range want {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, b)
	}
	if err := floorPush(p, encodeBatch(msgs), n); err != nil {
		t.Fatal(err)
	}
	for i, st := range streams {
		for _, w := range want {
			got, err := st.Recv()
			if err != nil {
				t.Fatalf("stream %d: %v", i, err)
			}
			if !proto.Equal(got, w) {
				t.Errorf("stream %d: got %v, want %v", i, got, w)
			}
		}
	}
	if err := floorPush(p, encodeBatch(msgs), n+1); err == nil || !strings.Contains(err.Error(), "reached 3 streams, want 4") {
		t.Errorf("push counted as reaching 4 streams: %v", err)
	}
	resp, err := http.Post("http://"+p.httpAddr+"/push", "application/octet-stream", strings.NewReader("\x05abc"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "length 5, only 3 bytes left") {
		t.Errorf("bad push body: %s %s", resp.Status, body)
	}
	// A delta ADS stream gets a push as a SotW one does.
	dst, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := dst.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: cdsType}); err != nil {
		t.Fatal(err)
	}
	if err := waitStreams(ctx, p, n+1, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	wantDelta := &discoveryv3.DeltaDiscoveryResponse{TypeUrl: edsType, SystemVersionInfo: "3", Nonce: "c",
		Resources: []*discoveryv3.Resource{{Name: "outbound|80||a.default.svc.cluster.local", Version: "v1"}}}
	b, err := proto.Marshal(wantDelta)
	if err != nil {
		t.Fatal(err)
	}
	if err := floorPush(p, encodeBatch([][]byte{b}), n+1); err != nil { // the SotW streams' copies go unread
		t.Fatal(err)
	}
	if got, err := dst.Recv(); err != nil || !proto.Equal(got, wantDelta) {
		t.Errorf("delta stream: got %v, %v; want %v", got, err, wantDelta)
	}
	// A per-type service's stream is refused.
	cst, err := clusterv3.NewClusterDiscoveryServiceClient(cc).StreamClusters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cst.Recv(); err == nil || !strings.Contains(err.Error(), "floor serves only") {
		t.Errorf("CDS stream: %v", err)
	}
}

func TestWriteTableFloorAndClientBound(t *testing.T) {
	rep := &Report{Scenario: ScenarioHTTPEntries(), Results: []Result{
		{Server: Ours, Mode: "sotw", NewService: Convergence{P99Ms: 300}, BytesPerProxyNewService: 1000, ClientCPUNewService: 0.2},
		{Server: Baseline, Mode: "sotw", NewService: Convergence{P99Ms: 900}, BytesPerProxyNewService: 4000},
		{Server: Floor, Mode: "sotw", NewService: Convergence{P99Ms: 200}, BytesPerProxyNewService: 1000, ClientCPUNewService: 0.9, RSSAfterMB: 7},
		{Server: Ours, Mode: "delta", NewService: Convergence{P99Ms: 100}},
	}}
	var b strings.Builder
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	line := func(label string) string {
		for _, l := range strings.Split(out, "\n") {
			if l := strings.Join(strings.Fields(l), " "); strings.Contains(l, label) {
				return l
			}
		}
		t.Fatalf("no %q in\n%s", label, out)
		return ""
	}
	for label, want := range map[string]string{
		"sotw ours baseline":                      "sotw ours baseline baseline/ours bytes floor ours/floor",
		"new service convergence p99":             "new service convergence p99 (ms) 300.00 900.00 3.0x 200.00 1.5x",
		"bytes per proxy, new service":            "bytes per proxy, new service (B) 1000.00 4000.00 4.0x 1000.00 1.0x",
		"server RSS after connect":                "server RSS after connect (MB) 0.00 0.00 - - -",
		"load client CPU, new service window":     "load client CPU, new service window (cores) 0.20 0.00 - 0.90 -",
		"delta ours baseline":                     "delta ours baseline baseline/ours",
		"client-bound: floor sotw new service":    "client-bound: floor sotw new service convergence (the load client used 0.90 cores during the window, over 0.5)",
		"every service an HTTP ServiceEntry on 8": fmt.Sprintf("scenario: 1000 services, 1000 proxies; 20 endpoint changes, 5 new services; every service an HTTP ServiceEntry on %d without addresses", httpEntryPort),
	} {
		if got := line(label); got != want {
			t.Errorf("got  %q\nwant %q", got, want)
		}
	}
	if strings.Contains(out, "client-bound: controlplane") {
		t.Errorf("ours marked client-bound at 0.2 cores:\n%s", out)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
