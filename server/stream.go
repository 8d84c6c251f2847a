package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/librarymesh/controlplane/registry/autoregister"
	"github.com/librarymesh/controlplane/snapshot"
)

// ads serves xDS streams, state of the world and delta, for ADS and the
// per-type services. Each stream is one conn (see conn.go).
type ads struct {
	log     *slog.Logger
	pusher  *pusher
	metrics *metrics
	observe func(seconds float64) // convergence histogram
	done    chan struct{}         // closed when the server stops

	diffs *diffCache
	subs  *interner
	// opening holds a slot per stream taking in its first request (see
	// openSlot).
	opening chan struct{}
	ids     atomic.Uint64 // connection counter
	// requests counts the requests every stream has read (idleGC's
	// activity).
	requests atomic.Uint64
	debug    *istioDebug // answers debug clients (istioctl)
	// autoreg registers WorkloadGroup workloads (nil: refused).
	autoreg *autoregister.Controller
	// reqs holds decoded requests for reuse (see newRequest); sotwHeads
	// and deltaHeads, response messages (see responseHead.encode);
	// sotwDecoders and deltaDecoders, what requests are decoded into (see
	// streamSotW).
	reqs, sotwHeads, deltaHeads, sotwDecoders, deltaDecoders sync.Pool
}

func newADS(log *slog.Logger, m *metrics, observe func(float64)) *ads {
	a := &ads{
		log: log, metrics: m, observe: observe, done: make(chan struct{}), diffs: newDiffCache(), subs: newInterner(),
		opening:    make(chan struct{}, runtime.GOMAXPROCS(0)),
		reqs:       sync.Pool{New: func() any { return new(request) }},
		sotwHeads:  sync.Pool{New: func() any { return new(discoveryv3.DiscoveryResponse) }},
		deltaHeads: sync.Pool{New: func() any { return new(discoveryv3.DeltaDiscoveryResponse) }},
	}
	a.sotwDecoders.New = func() any { return &sotwRequest{seed: a.subs.seed, interned: a.subs.lookup} }
	a.deltaDecoders.New = func() any { return &deltaRequest{seed: a.subs.seed, interned: a.subs.lookup} }
	return a
}

// newRequest returns a request to decode into. Requests are handled one at
// a time and nothing keeps one once handled (only what its fields point
// to), so each goes back to the pool then (freeRequest): after a push, a
// thousand ACKs come in, each a request of about 180 bytes.
func (a *ads) newRequest() *request { return a.reqs.Get().(*request) }

// freeRequest gives r back for reuse, cleared.
func (a *ads) freeRequest(r *request) {
	*r = request{}
	a.reqs.Put(r)
}

// stop ends every stream.
func (a *ads) stop() { close(a.done) }

// request is a SotW or delta request.
type request struct {
	node                   *corev3.Node
	nodeWire               []byte // node as it came, if kept (see nodeField)
	typeURL, nonce         string
	version                string // SotW: the version_info
	isErr                  bool
	errMsg                 string
	names                  []string          // SotW, when set is nil
	set                    *nameSet          // SotW: the names; delta: the subscribed names; interned
	subscribe, unsubscribe []string          // delta
	initial                map[string]string // delta: versions held on the first request
}

// xdsStream is one stream: its connection and, per type, where the
// protocol stands. The stream's work uses it, one piece at a time (see
// serve).
type xdsStream struct {
	a           *ads
	ctx         context.Context
	delta       bool
	defaultType string          // of a per-type service; "" for ADS
	c           *conn           // set by the first request
	debugType   string          // a debug client's first type; it never gets a conn
	unknown     map[string]bool // types not served, answered once each
	types       [numTypes]*typeState
	nonce       uint64

	send   func(m any) error // the stream's SendMsg
	events chan streamEvent  // see serve

	// mu is held by whichever of serve's work, read's answer and the
	// waker's pushInline uses the stream's state (everything above but
	// events).
	mu     sync.Mutex
	queued int  // requests read and left to serve, not yet handled there
	ended  bool // serve returned: read hands everything to it (to be dropped)
	slot   bool // the stream holds an opening slot (see openSlot)

	// A push sent from the waker (see pushInline).
	inline  bool  // the flush under way is one: respond keeps to budget
	budget  int   // bytes it may still send
	sendErr error // its send failed: serve ends the stream with it
}

// grpcStream is what every xDS service's stream offers (SotW and delta).
type grpcStream interface {
	Context() context.Context
	SendMsg(m any) error
	RecvMsg(m any) error
}

// typeState is what a stream knows of one type.
type typeState struct {
	// index, the flags and (delta) answer share a word: a proxy has a
	// typeState per type it asks for, kept while it is connected.
	index     int32
	requested bool
	legacy    bool         // SotW: wildcard because the first request named nothing
	answer    bool         // delta: no response yet: a wildcard subscription is answered even if empty
	sub       subscription // what the proxy asks for now

	// The proxy holds what heldSub selects of held (nothing when held is nil).
	held    *typeSnapshot
	heldSub subscription

	pending   *sentResponse // the last response, not answered yet
	lastNonce string
	nacked    *typeSnapshot // rejected: not sent again

	// SotW only
	presented string // the version the first request said the proxy holds (see resume)

	// delta only
	initial map[string]string // versions named by the first request, until the first response
	force   []string          // names subscribed since the last response: sent whatever is held
}

func (t *typeState) typeURL() string { return xdsTypes[t.index] }

type sentResponse struct {
	nonce string
	ts    *typeSnapshot
	sub   subscription
}

// streamSotW serves a state-of-the-world stream; typeURL is the type of a
// per-type service, "" for ADS.
func (a *ads) streamSotW(st grpcStream, typeURL string) error {
	s := a.newStream(st, false, typeURL)
	known := map[string]*nameSet{} // the last names by type; requests are decoded one at a time (under the stream's mu)
	return a.serve(s, st, func(raw *rawMsg) (*request, error) {
		// A request keeps nothing of what it is decoded into but what
		// decoding made anew (the node, new names), so that goes back to
		// a pool shared by every stream: kept by each stream, it would
		// hold 250 B a proxy; made for each request, it was 2 KB of
		// garbage a sidecar connecting.
		m := a.sotwDecoders.Get().(*sotwRequest)
		defer a.sotwDecoders.Put(m)
		defer m.reset()
		m.known, m.skipNode = known, s.c != nil
		if err := raw.decode(m); err != nil {
			return nil, err
		}
		r := &m.req
		out := a.newRequest()
		*out = request{
			node: r.GetNode(), typeURL: r.GetTypeUrl(), nonce: r.GetResponseNonce(), version: r.GetVersionInfo(),
			isErr: r.GetErrorDetail() != nil, errMsg: r.GetErrorDetail().GetMessage(),
			set: m.set, names: m.names, nodeWire: m.nodeWire,
		}
		if out.set == nil && len(out.names) > 0 && !slices.Contains(out.names, "*") {
			out.set, out.names = a.subs.of(out.names), nil
		}
		if out.set != nil {
			known[out.typeURL] = out.set
		}
		return out, nil
	})
}

// streamDelta serves a delta stream; typeURL as for streamSotW.
func (a *ads) streamDelta(st grpcStream, typeURL string) error {
	s := a.newStream(st, true, typeURL)
	return a.serve(s, st, func(raw *rawMsg) (*request, error) {
		m := a.deltaDecoders.Get().(*deltaRequest) // as for SotW
		defer a.deltaDecoders.Put(m)
		defer m.reset()
		m.skipNode = s.c != nil
		if err := raw.decode(m); err != nil {
			return nil, err
		}
		r := &m.req
		out := a.newRequest()
		*out = request{
			node: r.GetNode(), typeURL: r.GetTypeUrl(), nonce: r.GetResponseNonce(),
			isErr: r.GetErrorDetail() != nil, errMsg: r.GetErrorDetail().GetMessage(),
			subscribe: r.GetResourceNamesSubscribe(), set: m.set, unsubscribe: r.GetResourceNamesUnsubscribe(),
			initial: r.GetInitialResourceVersions(), nodeWire: m.nodeWire,
		}
		return out, nil
	})
}

func (a *ads) newStream(st grpcStream, delta bool, typeURL string) *xdsStream {
	return &xdsStream{a: a, ctx: st.Context(), delta: delta, defaultType: typeURL, send: st.SendMsg}
}

// streamEvent is what wakes a stream's goroutine: a request (raw), the
// error that ended reading (err), or neither: a new snapshot (see
// conn.setSnapshot).
type streamEvent struct {
	raw *rawMsg
	req *request // raw decoded already (see xdsStream.answer)
	err error
}

// serve runs a stream. Requests are read on a goroutine of their own (see
// read), which takes in a proxy's ACKs itself; anything else it reads (a
// stream's first request, a debug client's, a NACK, a change of
// subscription) is decoded and handled here, one at a time, as are the
// pushes the waker does not send itself (see pushInline). Both goroutines
// mostly wait: the work of sending happens where it does not grow the
// waiting stacks (see onOwnStack). mu keeps them, and the waker, from
// touching the stream's state at once.
//
// One channel of one slot brings requests, the reader's end and pushes, so
// the wait is a select of two cases, not five: on a push to a thousand
// proxies each stream passes through it once (the push), and select's cost
// grows with its cases. A push that finds the slot taken by a request is
// not lost: every request handled here is followed by a flush, and the
// snapshot was set before the push tried.
func (a *ads) serve(s *xdsStream, st grpcStream, decode func(*rawMsg) (*request, error)) (err error) {
	s.events = make(chan streamEvent, 1)
	quit := make(chan struct{}) // closed when serve returns: nothing more is read from events
	defer close(quit)
	go s.read(st, decode, quit)
	defer func() {
		s.mu.Lock()
		s.ended = true
		s.mu.Unlock()
		a.close(s, err)
	}()
	done := make(chan error, 1) // onOwnStack's, reused: one piece of work at a time
	for {
		var ev streamEvent
		select {
		case <-a.done:
			return status.Error(codes.Unavailable, "control plane is shutting down")
		case ev = <-s.events:
		}
		switch {
		case ev.err != nil:
			if errors.Is(ev.err, io.EOF) {
				return nil
			}
			return ev.err
		case ev.raw != nil || ev.req != nil:
			if s.c == nil && s.debugType == "" {
				if err := a.openSlot(s.ctx); err != nil {
					return err
				}
				s.slot = true
			}
			err = onOwnStack(done, func() error {
				s.mu.Lock()
				defer s.mu.Unlock()
				defer s.releaseSlot()
				s.queued--
				a.requests.Add(1)
				r := ev.req
				if r == nil {
					var err error
					if r, err = decode(ev.raw); err != nil {
						return err
					}
				}
				defer a.freeRequest(r)
				return s.handle(r)
			})
			if err == nil && s.c != nil { // a debug client has no conn
				// The responses go out from a stack of their own too:
				// taking in a request can grow a stack to 8 KB (decoding a
				// first request's node), and a response may wait for the
				// proxy to read it, on whatever stack sent it (a fleet of
				// 1000 connecting at once: about 700 wait at a time). Sent
				// from a new one, they wait on 4 KB.
				err = onOwnStack(done, func() error {
					s.mu.Lock()
					defer s.mu.Unlock()
					return s.flush()
				})
			}
		default:
			err = onOwnStack(done, func() error {
				s.mu.Lock()
				defer s.mu.Unlock()
				return s.flush()
			})
		}
		if err != nil {
			return err
		}
	}
}

// openSlot waits until fewer than opening's capacity of streams are
// taking in their first request (decoding the node, building the proxy's
// first snapshot under the pusher's lock), then takes a slot, given back
// before the first response goes out (see releaseSlot), or before the
// stream waits on anything but the CPU: a WorkloadGroup's registration, a
// debug client's answer. A fleet connecting at once would
// otherwise have a goroutine per stream waiting for the pusher's lock, each
// on the stack the node's decoding grew (1000 sidecars at S: about 970 at
// once). Waiting here, the stream's own goroutine waits, as it does for its
// next event, on the stack it keeps anyway.
func (a *ads) openSlot(ctx context.Context) error {
	select {
	case a.opening <- struct{}{}:
		return nil
	case <-a.done:
		return status.Error(codes.Unavailable, "control plane is shutting down")
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}

// releaseSlot gives back the stream's opening slot, if it holds one.
func (s *xdsStream) releaseSlot() {
	if s.slot {
		s.slot = false
		<-s.a.opening
	}
}

// read reads the stream's requests until it ends. A proxy's ACK (of the
// response pending, the subscription unchanged) is decoded and handled
// here, and serve is woken only if a response is due after it: on
// a push to a thousand proxies, a thousand answers come back, and handing
// each to serve cost two goroutine switches and a third goroutine (perf,
// delta endpoint changes at S: the answers' handoffs used more of the
// server's CPU than building the push). Everything else goes to serve, in
// the order read.
func (s *xdsStream) read(st grpcStream, decode func(*rawMsg) (*request, error), quit <-chan struct{}) {
	for {
		raw := new(rawMsg)
		ev := streamEvent{raw: raw}
		if err := st.RecvMsg(raw); err != nil {
			// The context's end comes here too: RecvMsg returns.
			ev = streamEvent{err: err}
		} else if handled, r, err := s.answer(raw, decode); handled {
			switch {
			case err != nil:
				ev = streamEvent{err: err}
			case r == nil:
				continue
			default:
				ev = streamEvent{req: r}
			}
		}
		select {
		case s.events <- ev:
		case <-quit:
			if ev.raw != nil {
				ev.raw.free()
			}
			return
		}
		if ev.err != nil {
			return
		}
	}
}

// answer decodes raw here once the stream is open and serve has no request
// of it waiting; otherwise it reports false, having changed nothing, and
// serve takes raw, queued behind the rest. A decoded request that answers
// a response and leaves the subscription as it is, is handled here, and
// serve is woken only if a response is due after it; any other goes to
// serve decoded (r), or ends the stream (err).
func (s *xdsStream) answer(raw *rawMsg, decode func(*rawMsg) (*request, error)) (handled bool, r *request, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c == nil || s.queued > 0 || s.ended {
		s.queued++
		return false, nil, nil
	}
	r, err = decode(raw)
	if err != nil {
		return true, nil, err
	}
	t := s.answerOnly(r)
	if t == nil {
		s.queued++
		return true, r, nil
	}
	s.a.requests.Add(1)
	s.answered(t, r)
	s.a.freeRequest(r)
	if s.due(t) {
		s.c.wakeStream()
	}
	return true, nil, nil
}

// onOwnStack runs fn on a goroutine of its own and waits for it on done
// (one slot, empty). A stream's goroutine waits in serve about 2.2 KB deep,
// 1.4 KB of it gRPC's frames; handling a request or sending a response
// nests deeper (building, encoding, gRPC's send path). Run there, that
// work would grow the stack to 8 KB or more, and the stack would keep that
// size for as long as the proxy stays connected: at a collection the
// runtime halves a stack only when under a quarter of it is in use. Run
// here, it takes a stack only while it runs, and the waiting goroutine
// keeps 4 KB.
func onOwnStack(done chan error, fn func() error) error {
	go func() { done <- fn() }()
	return <-done
}

// open makes the connection of a stream's first request: it checks the
// node (and, on the TLS port, that the caller owns it) and builds the
// proxy's first snapshot, so the request is answered at once. nodeWire is
// the node as it came, nil if the decoder did not keep it.
func (a *ads) open(s *xdsStream, node *corev3.Node, nodeWire []byte) error {
	px, err := snapshot.ParseProxy(node)
	if err != nil {
		a.metrics.rejected.WithLabelValues("MalformedNodeID").Inc()
		a.log.Warn("rejecting xDS stream", "node", node.GetId(), "error", err)
		return status.Error(codes.InvalidArgument, err.Error())
	}
	caller := callerIdentity(s.ctx)
	if caller != nil {
		if err := checkOwnsAddresses(a.pusher.reg.View(), px, *caller); err != nil {
			a.metrics.rejected.WithLabelValues("AddressNotOwned").Inc()
			a.log.Warn("rejecting xDS stream", "node", px.ID, "error", err)
			return err
		}
	}
	// VHDS needs delta xDS on the ADS stream (Envoy refuses it otherwise).
	px.DeltaADS = s.delta && s.defaultType == ""
	wire := nodeWire
	if wire == nil {
		if wire, err = proto.Marshal(node); err != nil {
			return status.Errorf(codes.InvalidArgument, "node %s: %v", px.ID, err)
		}
	}
	c := a.newConn(px, wire, s.delta, caller)
	c.wake, c.push = s.events, s.pushInline // before the pusher knows c
	if px.Metadata.AutoRegisterGroup != "" {
		// Registering waits for the registry's backend (the Kubernetes
		// API): not while holding a slot every connecting proxy needs.
		s.releaseSlot()
	}
	if c.autoreg, err = a.autoRegister(s.ctx, px, node, caller); err != nil {
		return err
	}
	a.pusher.connect(c)
	s.c = c
	// Once connected, c is the pusher's too: its kind is read under its mu.
	c.mu.Lock()
	kind := c.kind
	c.mu.Unlock()
	a.log.Info("proxy connected", "conn", c.id, "kind", kind, "delta", s.delta)
	return nil
}

// newConn makes the connection of a proxy; caller is nil on the plaintext port.
func (a *ads) newConn(px *snapshot.Proxy, node []byte, delta bool, caller *Identity) *conn {
	return &conn{
		id: px.ID + "-" + strconv.FormatUint(a.ids.Add(1), 10), proxy: px, node: node, delta: delta,
		connectedAt: time.Now(), caller: caller, observe: a.observe,
	}
}

// close drops a stream's connection; err is why the stream ended (nil: the
// proxy closed it).
func (a *ads) close(s *xdsStream, err error) {
	if s.c == nil {
		return
	}
	a.pusher.disconnect(s.c)
	if s.c.autoreg != nil {
		s.c.autoreg.Close()
	}
	attrs := []any{"conn", s.c.id}
	if err != nil {
		attrs = append(attrs, "reason", err)
	}
	a.log.Info("proxy disconnected", attrs...)
}

// handle takes in one request.
func (s *xdsStream) handle(r *request) error {
	if s.c == nil && (s.debugType != "" || isIstioDebug(r.typeURL)) {
		if s.debugType == "" {
			s.debugType = r.typeURL
			s.a.log.Debug("debug client", "node", r.node.GetId(), "type", r.typeURL)
		}
		// A debug client is answered here, and its answer may wait for
		// it to read: not while holding a slot every connecting proxy
		// needs (it takes none for its later requests, see serve).
		s.releaseSlot()
		return s.handleDebug(r)
	}
	if s.c == nil {
		if err := s.a.open(s, r.node, r.nodeWire); err != nil {
			return err
		}
	}
	typeURL := r.typeURL
	switch {
	case typeURL == "":
		typeURL = s.defaultType
	case s.defaultType != "" && typeURL != s.defaultType:
		return status.Errorf(codes.InvalidArgument, "type %s requested on the %s service", typeURL, shortType(s.defaultType))
	}
	if typeURL == HealthInfoType {
		return s.reportHealth(r)
	}
	i := typeIndex(typeURL)
	if i < 0 {
		return s.answerUnknown(typeURL, r)
	}
	t := s.types[i]
	if t == nil {
		t = &typeState{index: int32(i)}
		s.types[i] = t
	}
	if s.delta {
		s.handleDelta(t, r)
	} else {
		s.handleSotW(t, r)
	}
	return nil
}

// answerOnly returns the type whose pending response r answers, when r
// is an ACK (not a NACK: its log and metrics are serve's) that leaves the
// subscription as it is; otherwise nil.
func (s *xdsStream) answerOnly(r *request) *typeState {
	typeURL := r.typeURL
	if typeURL == "" {
		typeURL = s.defaultType
	}
	if r.isErr || r.nonce == "" || s.defaultType != "" && typeURL != s.defaultType {
		return nil
	}
	i := typeIndex(typeURL)
	if i < 0 {
		return nil
	}
	t := s.types[i]
	if t == nil || !t.requested || t.pending == nil || r.nonce != t.pending.nonce {
		return nil
	}
	if s.delta {
		if len(r.subscribe) > 0 || r.set != nil || len(r.unsubscribe) > 0 || len(r.initial) > 0 {
			return nil
		}
		return t
	}
	// handleSotW's subscription, unchanged: the same names (interned, so
	// the same set), or none on a legacy wildcard.
	switch {
	case r.set != nil:
		if t.legacy || t.sub != (subscription{set: r.set}) {
			return nil
		}
	case len(r.names) > 0:
		return nil
	case !t.legacy || t.sub != (subscription{wildcard: true}):
		return nil
	}
	return t
}

// due reports whether a response of t may be due: anything but the proxy
// holding, as it subscribes to it, the content of t's current snapshot.
// (serve's flush decides; this only saves waking it.)
func (s *xdsStream) due(t *typeState) bool {
	snap := s.c.snapshot()
	if snap == nil {
		return false
	}
	ts := snap.types[t.index]
	held := t.steady() && t.held != nil && t.held.version == ts.version && t.sub.same(t.heldSub)
	return !held
}

// steady reports whether nothing but a new snapshot can make t's next
// response: none pending, rejected, forced, first or resumed.
func (t *typeState) steady() bool {
	return t.pending == nil && t.nacked == nil && len(t.force) == 0 && t.initial == nil && !t.answer && t.presented == ""
}

// handleSotW takes in a SotW request: the answer to the last response and
// the subscription. A request answering an older response is stale and
// ignored, as the protocol says.
func (s *xdsStream) handleSotW(t *typeState, r *request) {
	if r.nonce != "" {
		switch {
		case t.pending != nil && r.nonce == t.pending.nonce:
			s.answered(t, r)
		case r.nonce != t.lastNonce:
			return
		}
	}
	first := !t.requested
	t.requested = true
	if first && r.nonce == "" {
		t.presented = r.version
	}
	explicit, star := r.set, false
	if explicit == nil && len(r.names) > 0 {
		names := slices.DeleteFunc(slices.Clone(r.names), func(n string) bool { return n == "*" })
		star = len(names) < len(r.names)
		explicit = s.a.subs.of(names)
	}
	sub := subscription{wildcard: star}
	switch {
	case star:
	case explicit == nil && (first || t.legacy):
		sub.wildcard, t.legacy = true, true
	default:
		sub.set, t.legacy = explicit, false
	}
	t.sub = sub
}

// handleDelta takes in a delta request: the answer to the last response
// and the changes to the subscription.
func (s *xdsStream) handleDelta(t *typeState, r *request) {
	if r.nonce != "" && t.pending != nil && r.nonce == t.pending.nonce {
		s.answered(t, r)
	}
	first := !t.requested
	if first {
		t.requested, t.answer = true, true
		t.initial = r.initial
		t.sub.wildcard = len(r.subscribe) == 0 && r.set == nil // legacy wildcard
		t.sub.namespaces = t.index == vhdsIndex
	}
	adds := r.subscribe
	if r.set != nil {
		if t.sub.set == nil && len(r.unsubscribe) == 0 {
			// Names another stream subscribed to already: the set is shared.
			t.sub.set = r.set
			if !first {
				t.force = r.set.appendNames(t.force)
			}
			return
		}
		adds = r.set.appendNames(make([]string, 0, r.set.len()))
	}
	if slices.Contains(adds, "*") {
		t.sub.wildcard = true
		adds = slices.DeleteFunc(slices.Clone(adds), func(n string) bool { return n == "*" })
	}
	var removes []string
	for _, n := range r.unsubscribe {
		if n == "*" {
			t.sub.wildcard = false
			continue
		}
		removes = append(removes, n)
	}
	if !first {
		// Sent whatever the stream holds: the proxy dropped them when it
		// unsubscribed. (A first request says what it holds instead.)
		t.force = append(t.force, adds...)
	}
	t.sub.set = s.a.subs.update(t.sub.set, adds, removes)
}

// answered records the ACK or NACK of the pending response.
func (s *xdsStream) answered(t *typeState, r *request) {
	p := t.pending
	t.pending = nil
	newNack := s.c.answered(int(t.index), p.ts.version, r.errMsg, r.isErr)
	if !r.isErr {
		t.held, t.heldSub, t.nacked = p.ts, p.sub, nil
		return
	}
	t.nacked = p.ts
	s.a.metrics.nacks.WithLabelValues(shortTypes[t.index]).Inc()
	if newNack {
		s.a.log.Warn("proxy rejected config; not resending it until it changes",
			"conn", s.c.id, "type", shortTypes[t.index], "version", p.ts.version, "error", r.errMsg)
	}
}
