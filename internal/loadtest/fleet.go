package loadtest

import (
	"bytes"
	"context"
	"fmt"
	"iter"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/stats"
)

// probe watches the proxies that get one change: a proxy has it once it
// ACKed responses carrying each of the change's markers.
type probe struct {
	start   time.Time
	markers []marker
	expect  []bool      // per proxy, whether it gets the change
	seen    []uint32    // per proxy, markers seen (bit per marker); written by the proxy's goroutine
	at      []time.Time // per proxy, when it ACKed the last marker (zero for one not expected)
	left    atomic.Int64
	done    chan struct{}
}

// newProbe watches the proxies seenBy picks (nil: all).
func newProbe(specs []ProxySpec, markers []marker, seenBy func(ProxySpec) bool) *probe {
	n := len(specs)
	p := &probe{markers: markers, expect: make([]bool, n), seen: make([]uint32, n), at: make([]time.Time, n), done: make(chan struct{})}
	left := 0
	for i, s := range specs {
		if p.expect[i] = seenBy == nil || seenBy(s); p.expect[i] {
			left++
		}
	}
	p.left.Store(int64(left))
	if left == 0 {
		close(p.done)
	}
	return p
}

// fleet is the simulated proxies: one ADS stream each, many per gRPC
// connection.
type fleet struct {
	specs []ProxySpec
	delta bool
	parse *parseCache
	sets  *nameSets // the SotW proxies' subscriptions
	probe atomic.Pointer[probe]
	bytes atomic.Int64 // proto bytes received
	up    atomic.Int64 // proto bytes sent (requests, ACKs)
	// record, while set, keeps what one proxy receives (SotW or delta),
	// for the bytes floor.
	record atomic.Pointer[recording]

	configured  []time.Time
	configuredN atomic.Int64
	allReady    chan struct{}
	// gate, when set, holds a slot for each proxy connecting and not yet
	// configured (Scenario.ConnectConcurrency).
	gate chan struct{}

	errOnce sync.Once
	err     error
}

func newFleet(specs []ProxySpec, delta bool) *fleet {
	return &fleet{specs: specs, delta: delta, parse: newParseCache(), sets: newNameSets(),
		configured: make([]time.Time, len(specs)), allReady: make(chan struct{})}
}

// run connects every proxy to addr over conns connections and keeps the
// streams until ctx ends.
func (f *fleet) run(ctx context.Context, addr string, conns int) ([]*grpc.ClientConn, error) {
	var ccs []*grpc.ClientConn
	codec := newClientCodec()
	for range conns {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithStatsHandler(byteCounter{in: &f.bytes, out: &f.up}),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20), grpc.ForceCodecV2(codec)),
			grpc.WithInitialWindowSize(4<<20), grpc.WithInitialConnWindowSize(16<<20),
			// The transport's frames too, which pile up in every stream's
			// receive buffer while a new service's SotW responses arrive.
			experimental.WithBufferPool(codec.pool))
		if err != nil {
			return ccs, fmt.Errorf("dial %s: %w", addr, err)
		}
		ccs = append(ccs, cc)
	}
	for i := range f.specs {
		cc := ccs[i%len(ccs)]
		go func() {
			if f.gate != nil {
				select {
				case f.gate <- struct{}{}:
				case <-ctx.Done():
					return
				}
			}
			var err error
			if f.delta {
				err = f.runDelta(ctx, cc, i)
			} else {
				err = f.runSotW(ctx, cc, i)
			}
			if f.gate != nil && f.configured[i].IsZero() {
				<-f.gate // the stream ended before it was configured
			}
			if err != nil && ctx.Err() == nil {
				f.fail(fmt.Errorf("proxy %s: %w", f.specs[i].ID, err))
			}
		}()
	}
	return ccs, nil
}

func (f *fleet) fail(err error) {
	f.errOnce.Do(func() { f.err = err })
}

// readiness is what acked asks of a proxy's state.
type readiness interface {
	complete() bool // everything the proxy wants has arrived
	settle()        // the proxy is configured: what arrives need not be recorded any more
}

// acked is called after proxy i ACKed a response of typeURL: it records
// when the proxy became fully configured and which probe markers it saw.
func (f *fleet) acked(i int, s readiness, typeURL string, resources iter.Seq[[]byte]) {
	now := time.Now()
	if f.configured[i].IsZero() && s.complete() {
		f.configured[i] = now
		s.settle()
		if f.gate != nil {
			<-f.gate // the next proxy may connect
		}
		if f.configuredN.Add(1) == int64(len(f.specs)) {
			close(f.allReady)
		}
	}
	p := f.probe.Load()
	if p == nil || !p.expect[i] {
		return
	}
	full := uint32(1)<<len(p.markers) - 1
	if p.seen[i] == full {
		return
	}
	for k, m := range p.markers {
		if !m.in(typeURL) || p.seen[i]&(1<<k) != 0 {
			continue
		}
		for r := range resources {
			if bytes.Contains(r, m.text) {
				p.seen[i] |= 1 << k
				break
			}
		}
	}
	if p.seen[i] == full {
		p.at[i] = now
		if p.left.Add(-1) == 0 {
			close(p.done)
		}
	}
}

// recording is the encoded responses one proxy received during a change.
type recording struct {
	proxy int
	mu    sync.Mutex
	msgs  [][]byte
}

// messages returns the responses kept so far.
func (r *recording) messages() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.msgs
}

// add keeps an encoded response (b is not written to afterwards).
func (r *recording) add(b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, b)
}

// byteCounter counts the proto bytes the client receives and sends.
type byteCounter struct{ in, out *atomic.Int64 }

func (b byteCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (b byteCounter) HandleRPC(_ context.Context, s stats.RPCStats) {
	switch p := s.(type) {
	case *stats.InPayload:
		b.in.Add(int64(p.Length))
	case *stats.OutPayload:
		b.out.Add(int64(p.Length))
	}
}
func (b byteCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (b byteCounter) HandleConn(context.Context, stats.ConnStats)                       {}
