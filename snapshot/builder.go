package snapshot

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/librarymesh/controlplane/meshname"
	"github.com/librarymesh/controlplane/registry"
)

// Kind is what sort of xDS client a proxy is.
type Kind int

// Proxy kinds.
const (
	PodSidecar    Kind = iota // Envoy beside a pod, traffic captured by iptables
	VMSidecar                 // Envoy on a VM (WorkloadEntry or ServiceEntry endpoint), no capture
	ProxylessGRPC             // grpc-go's xDS client (node metadata GENERATOR=grpc)
	Router                    // a gateway's Envoy (node type router): configured by Gateways
)

func (k Kind) String() string {
	switch k {
	case VMSidecar:
		return "vm-sidecar"
	case ProxylessGRPC:
		return "proxyless-grpc"
	case Router:
		return "router"
	}
	return "pod-sidecar"
}

// Builder translates one model revision for every proxy. The parts many
// proxies share (outbound config per namespace, endpoints per cluster) are
// built once, on first use, and the same protos are returned to every proxy.
// It is safe for concurrent use. Nothing it returns may be modified.
type Builder struct {
	view registry.View
	opts Options

	pieces pieces // immutable parts every proxy's own config reuses
	// localityAware: some DestinationRule makes endpoints depend on the
	// client's locality (distribute, or outlier detection and so failover),
	// so shared parts are per locality and priorityLabels (every label a
	// failoverPriority names, sorted) too.
	localityAware  bool
	priorityLabels []string

	mu         sync.Mutex
	sidecarOut map[string]*memo                             // by scope.key (namespace and Sidecar)
	vmOut      map[string]*memo                             // by scope.key: VM sidecars without capture
	grpcOut    map[string]*memo                             // by scope.key
	gatewayOut map[string]*memo                             // by scope.key (namespace and Gateways)
	cla        map[string]*endpointv3.ClusterLoadAssignment // by cluster name
	claSrc     map[string]claSource
	results    map[string]*proxyResult // by proxyKey
	// owns are own parts carried over from the last revision, by proxyKey
	// (see WithServiceChanges); set before the Builder is used, then only read.
	owns     map[string]*Resources
	rules    map[string]*registry.DestinationRule // by proxy namespace and host (destinationRuleLocked)
	clusters map[string]*builtCluster             // by clusterKey (serviceClusterLocked)
	// listeners and vhosts are a service port's (see builtListeners), by
	// servicePortKey.
	listeners map[string]*builtListeners
	vhosts    map[string]*builtVirtualHost
	// valid holds the protos of shared parts known to pass ValidateAll
	// (finish skips them): found so here, or carried over with them.
	valid    map[types.Resource]struct{}
	problems []error

	// local holds, by port, the one endpoint on 127.0.0.1 of the inbound
	// clusters to that port, shared by all of them (see localEndpoints);
	// matches, the virtual inbound chains' matches (see portMatch).
	local, matches sync.Map
}

type memo struct {
	res *Resources
	err error
}

// pieces are protos built once per Builder and shared by the per-proxy parts.
type pieces struct {
	downstreamTLS         *corev3.TransportSocket
	grpcDownstreamTLS     *corev3.TransportSocket
	accessLog             *accesslogv3.AccessLog
	tlsInspector          []*listenerv3.ListenerFilter
	virtualInboundFilters []*listenerv3.ListenerFilter
	inboundPassthrough    *listenerv3.Filter
	trustMeta             *corev3.Metadata // see trustBundleMetadata
	virtualInboundAddress *corev3.Address
	useOriginalDst        *wrapperspb.BoolValue
	// catchAll is the virtual inbound listener's catch-all chains by mTLS
	// mode, passing traffic through unchecked: every pod no authorization
	// policy selects has the same (see NewBuilder).
	catchAll [registry.MTLSStrict + 1][]*listenerv3.FilterChain
}

func newPieces(opts Options) pieces {
	return pieces{
		downstreamTLS:         TransportSocket(DownstreamTlsContext()),
		grpcDownstreamTLS:     TransportSocket(GRPCDownstreamTlsContext()),
		accessLog:             FileAccessLog(opts.AccessLogPath),
		tlsInspector:          []*listenerv3.ListenerFilter{TLSInspector()},
		virtualInboundFilters: []*listenerv3.ListenerFilter{OriginalDst(), TLSInspector()},
		inboundPassthrough:    TCPProxyFilter(meshname.InboundPassthroughCluster, meshname.InboundPassthroughCluster),
		trustMeta:             trustBundleMetadata(opts.TrustBundle),
		virtualInboundAddress: SocketAddress(wildcardAddress, VirtualInboundPort),
		useOriginalDst:        wrapperspb.Bool(true),
	}
}

// NewBuilder makes a Builder for one model revision.
func NewBuilder(view registry.View, opts Options) *Builder {
	if opts.TrustDomain == "" {
		opts.TrustDomain = DefaultTrustDomain
	}
	if opts.RootNamespace == "" {
		opts.RootNamespace = DefaultRootNamespace
	}
	if opts.AccessLogPath == "" {
		opts.AccessLogPath = DefaultAccessLogPath
	}
	aware, labels := localityUse(view.DestinationRules())
	b := &Builder{
		view:           view,
		opts:           opts,
		pieces:         newPieces(opts),
		localityAware:  aware,
		priorityLabels: labels,
		sidecarOut:     map[string]*memo{},
		vmOut:          map[string]*memo{},
		grpcOut:        map[string]*memo{},
		gatewayOut:     map[string]*memo{},
		cla:            map[string]*endpointv3.ClusterLoadAssignment{},
		claSrc:         map[string]claSource{},
		results:        map[string]*proxyResult{},
		clusters:       map[string]*builtCluster{},
		listeners:      map[string]*builtListeners{},
		vhosts:         map[string]*builtVirtualHost{},
		valid:          map[types.Resource]struct{}{},
	}
	// Made once here and shared by every pod's own part, as the other
	// pieces are: a pod's own protos stay in memory for as long as it is
	// connected (see WithServiceChanges).
	for mode := range b.pieces.catchAll {
		b.pieces.catchAll[mode] = b.inboundFilterChains(registry.MTLSMode(mode), virtualInboundCatchAll, []*listenerv3.Filter{b.pieces.inboundPassthrough})
	}
	return b
}

// Revision is the model revision the Builder translates.
func (b *Builder) Revision() uint64 { return b.view.Revision() }

// Classify says what kind of proxy p is.
func (b *Builder) Classify(p *Proxy) Kind {
	if p.Type == RouterProxy {
		return Router
	}
	if p.IsProxylessGRPC() {
		return ProxylessGRPC
	}
	w := b.workload(p)
	if w != nil && isVM(w) {
		return VMSidecar
	}
	// A VM of a WorkloadGroup is one before its auto-registered
	// WorkloadEntry is in the model: its first config is a VM's.
	if w == nil && p.Metadata.AutoRegisterGroup != "" {
		return VMSidecar
	}
	return PodSidecar
}

// Kind names the proxy's kind, for logs, metrics and debug views.
func (b *Builder) Kind(p *Proxy) string { return b.Classify(p).String() }

// isCaptured reports whether iptables captures the proxy's traffic: its
// INTERCEPTION_MODE is REDIRECT or TPROXY. A VM sidecar that says so (as
// Istio's VM packages with iptables do) gets a pod's outbound listeners; one
// that says NONE or nothing gets loopback listeners (see outboundMode).
func isCaptured(p *Proxy) bool {
	switch strings.ToUpper(p.Metadata.InterceptionMode) {
	case "REDIRECT", "TPROXY":
		return true
	}
	return false
}

func isVM(w *registry.Workload) bool {
	return w.Kind == registry.KindWorkloadEntry || w.Kind == registry.KindServiceEntry
}

// workload is the registry's workload for one of the proxy's IPs, or nil.
// A workload of another namespace is not the proxy's: a proxy never gets
// the inbound side of another namespace's workload (a ServiceEntry that
// lists an address of another namespace's VM is reported by the registry).
func (b *Builder) workload(p *Proxy) *registry.Workload {
	for _, ip := range p.IPs {
		if w := b.view.WorkloadByIP(ip); w != nil && (p.Namespace == "" || w.Namespace == p.Namespace) {
			return w
		}
	}
	return nil
}

// Build returns everything the proxy receives: BuildParts merged.
func (b *Builder) Build(p *Proxy) (*Resources, error) {
	shared, own, err := b.BuildParts(p)
	if err != nil {
		return nil, err
	}
	return merge(shared, own), nil
}

// BuildParts returns what the proxy receives in two parts: shared, which
// is the same *Resources (the same protos in the same slices) for every
// proxy of its kind and namespace, and own, the proxy's inbound side (nil
// when it has none). The names in the two differ. A proxy built before from
// this Builder (or carried over by WithEndpointChanges) gets the same parts.
func (b *Builder) BuildParts(p *Proxy) (shared, own *Resources, err error) {
	_, shared, own, err = b.BuildKindParts(p)
	return shared, own, err
}

// BuildKindParts is BuildParts, and the proxy's Classify as its parts were
// built for (so a caller that needs both looks the proxy up once).
func (b *Builder) BuildKindParts(p *Proxy) (kind Kind, shared, own *Resources, err error) {
	key := proxyKey(p)
	b.mu.Lock()
	r, ok := b.results[key]
	b.mu.Unlock()
	if !ok {
		if r, err = b.build(p, key); err != nil {
			return 0, nil, nil, fmt.Errorf("proxy %s: %w", p.ID, err)
		}
		b.mu.Lock()
		b.results[key] = r
		b.mu.Unlock()
	}
	return r.kind, r.shared, r.own, nil
}

// proxyResult is a proxy's resources and what they were built from.
type proxyResult struct {
	shared    *Resources // of its kind and namespace
	own       *Resources // nil for none
	kind      Kind
	namespace string
	scopeKey  string // of its shared part (see scope)
	loopback  bool   // its shared part is in vmOut
	ips       []string
	workloads []*registry.Workload // view.WorkloadByIP of each IP
}

// proxyKey names everything of a Proxy that Build reads. It is made once
// per Proxy: a Proxy is not changed once it is built for.
func proxyKey(p *Proxy) string {
	if k := p.key.Load(); k != nil {
		return *k
	}
	k := makeProxyKey(p)
	p.key.Store(&k)
	return k
}

func makeProxyKey(p *Proxy) string {
	return string(p.Type) + "|" + p.Metadata.Generator + "|" + p.Metadata.InterceptionMode + "|" + p.Namespace + "|" + strings.Join(p.IPs, ",") + "|" + labelsKey(p.Metadata.Labels) + "|" + p.Locality + "|" + strconv.FormatBool(p.DeltaADS)
}

func (b *Builder) build(p *Proxy, key string) (*proxyResult, error) {
	r := &proxyResult{kind: b.Classify(p), namespace: p.Namespace, ips: p.IPs}
	for _, ip := range p.IPs {
		r.workloads = append(r.workloads, b.view.WorkloadByIP(ip))
	}
	var shared, own *Resources
	var err error
	w := b.workload(p)
	sc := b.scopeFor(p, w)
	switch {
	case r.kind == Router:
		sc = b.gatewayScope(p, w, sc)
	case r.kind != ProxylessGRPC && p.DeltaADS:
		sc.vhds = true
		sc.key += "|vhds"
	}
	r.scopeKey = sc.key
	switch r.kind {
	case Router:
		shared, err = b.shared(b.gatewayOut, sc, b.buildGateway)
	case ProxylessGRPC:
		if shared, err = b.shared(b.grpcOut, sc, b.buildGRPCOutbound); err == nil {
			own, err = b.ownPart(key, func() (*Resources, error) { return b.buildGRPCInbound(w) })
		}
	case VMSidecar:
		memo, build := b.sidecarOut, b.buildSidecarOutbound
		if r.loopback = !isCaptured(p); r.loopback {
			memo, build = b.vmOut, b.buildVMOutbound
		}
		if shared, err = b.shared(memo, sc, build); err == nil && w != nil {
			own, err = b.ownPart(key, func() (*Resources, error) { return b.buildVMInbound(w) })
		}
	default:
		if shared, err = b.shared(b.sidecarOut, sc, b.buildSidecarOutbound); err == nil && w != nil && w.Kind == registry.KindPod {
			own, err = b.ownPart(key, func() (*Resources, error) { return b.buildPodInbound(w) })
		}
	}
	if err != nil {
		return nil, err
	}
	r.shared, r.own = shared, own
	return r, nil
}

// shared returns the memoized part of a scope, building it under the lock
// on first use (the lock also guards the endpoint memo build uses).
func (b *Builder) shared(m map[string]*memo, sc *scope, build func(sc *scope) (*Resources, error)) (*Resources, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sharedLocked(m, sc, build)
}

// sharedLocked is shared with b.mu held.
func (b *Builder) sharedLocked(m map[string]*memo, sc *scope, build func(sc *scope) (*Resources, error)) (*Resources, error) {
	if e, ok := m[sc.key]; ok {
		return e.res, e.err
	}
	res, err := build(sc)
	if err == nil {
		b.problemLocked(res.finish(b.valid))
	}
	m[sc.key] = &memo{res: res, err: err}
	return res, err
}

// problem records resources left out of a proxy's own part.
func (b *Builder) problem(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.problemLocked(err)
}

// problemLocked records resources left out because they were invalid.
func (b *Builder) problemLocked(err error) {
	if err != nil && !slices.ContainsFunc(b.problems, func(e error) bool { return e.Error() == err.Error() }) {
		b.problems = append(b.problems, err)
	}
}

// Problems lists the resources this Builder left out so far because they
// failed validation (each proxy got the rest of its config).
func (b *Builder) Problems() []error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.problems)
}
