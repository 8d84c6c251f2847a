package loadtest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
)

// The bytes floor is the cheapest way to move a change's bytes: a server
// that translates nothing and holds pre-encoded responses (the ones one
// proxy got from our server for that change, SotW or delta), which it
// writes to every open ADS stream when told to. The same load client
// measures it as it measures our server, so ours/floor says how much of a
// push is more than moving its bytes (and its ACKs) between two processes
// on this machine. It answers no request, so a change that our server
// sends as round trips (a new cluster, then the endpoints the proxy asks
// for) reaches the floor's proxies in one burst.

// FloorConfig configures the floor server.
type FloorConfig struct {
	GRPCAddr, HTTPAddr string
	Logger             *slog.Logger
}

// FloorArgs are the arguments that make a loadtest binary serve the floor.
func FloorArgs() []string { return []string{"-floor-server"} }

// The ADS methods, SotW and delta: the only ones the floor serves.
const (
	adsStreamMethod = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
	adsDeltaMethod  = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
)

// floor is the floor server's state: a queue per open stream.
type floor struct {
	mu      sync.Mutex
	streams map[chan [][]byte]bool
}

// RunFloor serves the floor until ctx ends. It logs `serving gRPC` and
// `serving HTTP` with their addresses, like `controlplane serve`. POST
// /push with a body of length-prefixed encoded DiscoveryResponses (see
// encodeBatch) writes them, in order, to every open stream; GET /streams
// says how many are open.
func RunFloor(ctx context.Context, cfg FloorConfig) error {
	fl := &floor{streams: map[chan [][]byte]bool{}}
	g := grpc.NewServer(grpc.MaxConcurrentStreams(1<<20), grpc.ForceServerCodecV2(rawCodec{}),
		grpc.UnknownServiceHandler(fl.serve), grpc.InitialWindowSize(4<<20), grpc.InitialConnWindowSize(16<<20))
	lis, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.GRPCAddr, err)
	}
	hl, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		lis.Close()
		return fmt.Errorf("listen %s: %w", cfg.HTTPAddr, err)
	}
	hs := &http.Server{Handler: fl.handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 2)
	go func() { errc <- g.Serve(lis) }()
	go func() { errc <- hs.Serve(hl) }()
	cfg.Logger.Info("serving gRPC", "addr", lis.Addr().String())
	cfg.Logger.Info("serving HTTP", "addr", hl.Addr().String())
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	g.Stop()
	hs.Close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func (fl *floor) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET /streams", func(w http.ResponseWriter, _ *http.Request) {
		fl.mu.Lock()
		n := len(fl.streams)
		fl.mu.Unlock()
		fmt.Fprintln(w, n)
	})
	mux.HandleFunc("POST /push", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
			return
		}
		msgs, err := decodeBatch(body)
		if err != nil {
			http.Error(w, "push body: "+err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintln(w, fl.push(msgs))
	})
	return mux
}

// push queues msgs on every open stream and returns how many there are.
func (fl *floor) push(msgs [][]byte) int {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	for q := range fl.streams {
		q <- msgs
	}
	return len(fl.streams)
}

// serve holds one ADS stream, SotW or delta: it reads (and drops) the
// client's requests and writes what is pushed (responses of the stream's
// kind: a run pushes what its mode's streams got from our server).
func (fl *floor) serve(_ any, st grpc.ServerStream) error {
	if m, _ := grpc.MethodFromServerStream(st); m != adsStreamMethod && m != adsDeltaMethod {
		return fmt.Errorf("floor serves only %s and %s, not %s", adsStreamMethod, adsDeltaMethod, m)
	}
	q := make(chan [][]byte, 64)
	fl.mu.Lock()
	fl.streams[q] = true
	fl.mu.Unlock()
	defer func() {
		fl.mu.Lock()
		delete(fl.streams, q)
		fl.mu.Unlock()
	}()
	recvErr := make(chan error, 1)
	go func() {
		for {
			var m rawMsg
			if err := st.RecvMsg(&m); err != nil {
				recvErr <- err
				return
			}
		}
	}()
	for {
		select {
		case msgs := <-q:
			for _, b := range msgs {
				if err := st.SendMsg(&rawMsg{b: b}); err != nil {
					return err
				}
			}
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case <-st.Context().Done():
			return st.Context().Err()
		}
	}
}

// rawMsg is an encoded message the floor passes through untouched.
type rawMsg struct{ b []byte }

// rawCodec sends a rawMsg's bytes as they are (no copy: every stream
// queues the same slice) and reads a message's bytes into one.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(*rawMsg)
	if !ok {
		return nil, fmt.Errorf("raw codec cannot encode %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(m.b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*rawMsg)
	if !ok {
		return fmt.Errorf("raw codec cannot decode into %T", v)
	}
	m.b = data.Materialize()
	return nil
}

// encodeBatch joins messages, each after its length as a uvarint.
func encodeBatch(msgs [][]byte) []byte {
	var out []byte
	for _, m := range msgs {
		out = binary.AppendUvarint(out, uint64(len(m)))
		out = append(out, m...)
	}
	return out
}

// decodeBatch splits what encodeBatch joined.
func decodeBatch(b []byte) ([][]byte, error) {
	var msgs [][]byte
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 {
			return nil, fmt.Errorf("message %d: bad length prefix", len(msgs))
		}
		b = b[k:]
		if n > uint64(len(b)) {
			return nil, fmt.Errorf("message %d: length %d, only %d bytes left", len(msgs), n, len(b))
		}
		msgs = append(msgs, b[:n:n])
		b = b[n:]
	}
	return msgs, nil
}

// floorStreams asks the floor server how many streams are open.
func floorStreams(p *process) (int, error) {
	resp, err := http.Get("http://" + p.httpAddr + "/streams")
	if err != nil {
		return 0, fmt.Errorf("get /streams: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("read /streams: %w", err)
	}
	n, err := strconv.Atoi(string(bytes.TrimSpace(b)))
	if err != nil {
		return 0, fmt.Errorf("/streams said %q: %w", b, err)
	}
	return n, nil
}

// runFloor starts the floor server, connects a fleet of specs to it in
// mode (sotw or delta), configures every proxy with what one of ours got
// until it was configured (connected), so the floor's proxies subscribe to
// as many names and ACK with as many, and, for each recorded change, has
// it send the recorded responses to every stream, measured as runMode
// measures our server.
func runFloor(ctx context.Context, cfg Config, mode string, specs []ProxySpec, connected [][]byte, recs []recordedChange) (*Result, error) {
	base := filepath.Join(cfg.WorkDir, Floor+"-"+mode)
	if err := os.MkdirAll(base, 0o755); err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Progress, "%s %s: starting the bytes floor (log %s)\n", Floor, mode, filepath.Join(base, "server.log"))
	p, err := startProcess(ctx, cfg.FloorBin, FloorArgs(), filepath.Join(base, "server.log"), cfg.launch())
	if err != nil {
		return nil, err
	}
	defer p.stop()
	r := &Result{Server: Floor, Mode: mode, Proxies: cfg.Scenario.Proxies, Services: cfg.Scenario.Services, ColdStartSeconds: p.startup.Seconds()}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f := newFleet(specs, mode == "delta")
	ccs, err := f.run(sctx, p.grpcAddr, cfg.Conns)
	go func() { <-sctx.Done(); closeAll(ccs) }()
	if err != nil {
		return r, err
	}
	if err := waitStreams(ctx, p, len(specs), cfg.Timeout); err != nil {
		return r, err
	}
	if err := floorPush(p, encodeBatch(connected), len(specs)); err != nil {
		return r, err
	}
	select {
	case <-f.allReady:
	case <-time.After(cfg.Timeout):
		return r, fmt.Errorf("floor: only %d of %d proxies configured by the recorded responses after %v", f.configuredN.Load(), len(specs), cfg.Timeout)
	case <-ctx.Done():
		return r, ctx.Err()
	}
	if f.err != nil {
		return r, f.err
	}
	changes := make([]change, len(recs))
	for k, rc := range recs {
		c, body := rc.change, encodeBatch(rc.msgs)
		c.apply = func() error { return floorPush(p, body, len(specs)) }
		changes[k] = c
	}
	return r, r.change(ctx, cfg, p, f, changes, false)
}

// waitStreams waits until the floor holds n streams.
func waitStreams(ctx context.Context, p *process, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		got, err := floorStreams(p)
		if err != nil {
			return err
		}
		if got == n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("floor: %d of %d streams open after %v", got, n, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// floorPush has the floor send body's responses to its n streams.
func floorPush(p *process, body []byte, n int) error {
	resp, err := http.Post("http://"+p.httpAddr+"/push", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("floor push: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("floor push: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	if got := string(bytes.TrimSpace(b)); got != strconv.Itoa(n) {
		return fmt.Errorf("floor push reached %s streams, want %d", got, n)
	}
	return nil
}
