package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Relay sits on loopback between xDS clients (grpc-go's, given Addr as
// its server) and one of several control planes. It passes every stream
// through to the current upstream unchanged and, on the client's side of
// the wire, counts what each response carried. Switch moves clients to
// another upstream the way a load balancer would after a replica left:
// their streams end and they reconnect.
type Relay struct {
	Addr string

	mu        sync.Mutex
	upstreams []string // tried in order: the first that takes the stream gets it
	streams   map[int]context.CancelFunc
	next      int
	responses []RelayResponse
	requests  []string // type URLs of the requests passed up, in order
}

// RelayResponse is one response passed down to a client.
type RelayResponse struct {
	TypeURL   string
	Version   string // version_info (SotW) or system_version_info (delta)
	Resources int
}

// NewRelay starts a relay to upstream; it stops when the test ends.
func NewRelay(t testing.TB, upstream string) *Relay {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &Relay{Addr: lis.Addr().String(), upstreams: []string{upstream}, streams: map[int]context.CancelFunc{}}
	g := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}), grpc.UnknownServiceHandler(r.relay))
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return r
}

// Switch sends every stream from now on to upstream and ends the open
// ones, so their clients reconnect there.
func (r *Relay) Switch(upstream string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.upstreams = []string{upstream}
	for id, cancel := range r.streams {
		cancel()
		delete(r.streams, id)
	}
}

// SetUpstreams sets the upstreams a new stream tries in order (as a load
// balancer in front of replicas would: one that refuses is skipped); open
// streams stay where they are.
func (r *Relay) SetUpstreams(upstreams ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.upstreams = upstreams
}

// Streams returns how many streams the relay has opened so far.
func (r *Relay) Streams() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.next
}

// Responses returns the responses passed down so far and forgets them.
func (r *Relay) Responses() []RelayResponse {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.responses
	r.responses = nil
	return out
}

// Requests returns the type URLs of the requests passed up so far and
// forgets them.
func (r *Relay) Requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.requests
	r.requests = nil
	return out
}

// relay passes one stream through.
func (r *Relay) relay(_ any, down grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(down)
	ctx, cancel := context.WithCancel(down.Context())
	defer cancel()
	r.mu.Lock()
	id, upstreams := r.next, r.upstreams
	r.next++
	r.streams[id] = cancel
	r.mu.Unlock()
	up, closeUp, err := openUpstream(ctx, upstreams, method)
	if err != nil {
		return err
	}
	defer closeUp()
	delta := strings.HasSuffix(method, "DeltaAggregatedResources")
	go r.pipe(down, up, func(b []byte) { r.noteRequest(b, delta) })
	err = r.pipe(up, down, func(b []byte) { r.noteResponse(b, delta) })
	if ctx.Err() != nil {
		return status.Error(codes.Unavailable, "relay: upstream switched")
	}
	return err
}

// openUpstream opens method on the first upstream that takes it.
func openUpstream(ctx context.Context, upstreams []string, method string) (grpc.ClientStream, func(), error) {
	err := status.Error(codes.Unavailable, "relay: no upstream")
	for _, addr := range upstreams {
		cc, cerr := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if cerr != nil {
			return nil, nil, cerr
		}
		up, serr := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method, grpc.ForceCodec(rawCodec{}))
		if serr == nil { // without WaitForReady, a refused connection fails here
			return up, func() { cc.Close() }, nil
		}
		cc.Close()
		err = serr
	}
	return nil, nil, err
}

// pipe copies messages from one stream to the other until one ends.
func (r *Relay) pipe(from, to grpc.Stream, note func([]byte)) error {
	for {
		var b []byte
		if err := from.RecvMsg(&b); err != nil {
			if cs, ok := to.(grpc.ClientStream); ok && errors.Is(err, io.EOF) {
				return cs.CloseSend()
			}
			return err
		}
		note(b)
		if err := to.SendMsg(&b); err != nil {
			return err
		}
	}
}

func (r *Relay) noteRequest(b []byte, delta bool) {
	var typeURL string
	if delta {
		var m discoveryv3.DeltaDiscoveryRequest
		_ = proto.Unmarshal(b, &m)
		typeURL = m.GetTypeUrl()
	} else {
		var m discoveryv3.DiscoveryRequest
		_ = proto.Unmarshal(b, &m)
		typeURL = m.GetTypeUrl()
	}
	r.mu.Lock()
	r.requests = append(r.requests, typeURL)
	r.mu.Unlock()
}

func (r *Relay) noteResponse(b []byte, delta bool) {
	var rr RelayResponse
	if delta {
		var m discoveryv3.DeltaDiscoveryResponse
		_ = proto.Unmarshal(b, &m)
		rr = RelayResponse{TypeURL: m.GetTypeUrl(), Version: m.GetSystemVersionInfo(), Resources: len(m.GetResources())}
	} else {
		var m discoveryv3.DiscoveryResponse
		_ = proto.Unmarshal(b, &m)
		rr = RelayResponse{TypeURL: m.GetTypeUrl(), Version: m.GetVersionInfo(), Resources: len(m.GetResources())}
	}
	r.mu.Lock()
	r.responses = append(r.responses, rr)
	r.mu.Unlock()
}

// rawCodec passes messages through as bytes.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("relay: cannot encode %T", v)
	}
	return *b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("relay: cannot decode into %T", v)
	}
	*b = append((*b)[:0], data...)
	return nil
}

func (rawCodec) Name() string { return "proto" }
