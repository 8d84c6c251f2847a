package server

import (
	"bytes"
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statusv3 "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/librarymesh/controlplane/meshname"
	"github.com/librarymesh/controlplane/snapshot"
)

// Istio's debug types, which istioctl asks a control plane for over ADS
// with a node of its own making (`istioctl proxy-status --xds-address`,
// `istioctl x internal-debug`). Such a stream is a debug client: its node
// is not checked as a proxy and it never gets mesh config.
const (
	// istioDebugType carries one of the /debug/ views, named by the
	// request's resource name (e.g. "syncz", "config_dump?proxyID=ID").
	istioDebugType = "istio.io/debug"
	// istioSyncz is every connected proxy's sync state as CSDS
	// ClientConfigs, one per proxy.
	istioSyncz = istioDebugType + "/syncz"
	// istioConfigDump is the config of the proxy the resource name names,
	// as an Envoy admin ConfigDump's parts.
	istioConfigDump = istioDebugType + "/config_dump"
)

func isIstioDebug(typeURL string) bool {
	return typeURL == istioDebugType || strings.HasPrefix(typeURL, istioDebugType+"/")
}

// istioDebug answers debug clients.
type istioDebug struct {
	views         http.Handler // the /debug/ views of the HTTP port
	statuses      func() []connStatus
	rootNamespace string // callers proven in it see every proxy
	controlPlane  *corev3.ControlPlane
}

func newIstioDebug(views http.Handler, statuses func() []connStatus, rootNamespace string) *istioDebug {
	if rootNamespace == "" {
		rootNamespace = snapshot.DefaultRootNamespace
	}
	return &istioDebug{views: views, statuses: statuses, rootNamespace: rootNamespace, controlPlane: controlPlaneID()}
}

// controlPlaneID identifies this replica in responses as istiod does
// (istioctl prints it in its ISTIOD column): JSON with the component, the
// replica (host name) and the build version.
func controlPlaneID() *corev3.ControlPlane {
	host, _ := os.Hostname()
	version := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		version = bi.Main.Version
	}
	id, _ := json.Marshal(map[string]any{"Component": "controlplane", "ID": host, "Info": map[string]string{"version": version}})
	return &corev3.ControlPlane{Identifier: string(id)}
}

// handleDebug answers a debug client's request. A request carrying the
// nonce of our last response answers it (an ACK) and gets nothing; other
// nonces are the client's own (istioctl sends a time stamp).
func (s *xdsStream) handleDebug(r *request) error {
	if !isIstioDebug(r.typeURL) {
		return status.Errorf(codes.InvalidArgument, "a debug client (its first request was for %s) cannot ask for %s: connect as a proxy instead", s.debugType, r.typeURL)
	}
	if r.nonce != "" && r.nonce == strconv.FormatUint(s.nonce, 10) {
		return nil
	}
	names := r.names
	if r.set != nil {
		names = r.set.appendNames(nil)
	}
	names = append(names, r.subscribe...)
	res, err := s.a.debug.resources(callerIdentity(s.ctx), r.typeURL, names)
	if err != nil {
		return err
	}
	s.nonce++
	nonce := strconv.FormatUint(s.nonce, 10)
	var resp proto.Message
	if s.delta {
		d := &discoveryv3.DeltaDiscoveryResponse{TypeUrl: r.typeURL, Nonce: nonce, SystemVersionInfo: nonce, ControlPlane: s.a.debug.controlPlane}
		for _, x := range res {
			d.Resources = append(d.Resources, &discoveryv3.Resource{Name: x.name, Version: nonce, Resource: x.any})
		}
		resp = d
	} else {
		d := &discoveryv3.DiscoveryResponse{TypeUrl: r.typeURL, Nonce: nonce, VersionInfo: nonce, ControlPlane: s.a.debug.controlPlane}
		for _, x := range res {
			d.Resources = append(d.Resources, x.any)
		}
		resp = d
	}
	return s.sendOne(r.typeURL, resp)
}

// sendOne sends a response that is not part of a type's state.
func (s *xdsStream) sendOne(typeURL string, resp proto.Message) error {
	b, err := proto.Marshal(resp)
	if err != nil {
		return status.Errorf(codes.Internal, "encode %s response: %v", typeURL, err)
	}
	return s.send(&encodedMsg{head: b})
}

type debugResource struct {
	name string
	any  *anypb.Any
}

// resources answers one debug request of caller (nil on the plaintext
// port, which sees everything).
func (d *istioDebug) resources(caller *Identity, typeURL string, names []string) ([]debugResource, error) {
	operator := caller == nil || caller.Namespace == d.rootNamespace
	switch typeURL {
	case istioSyncz:
		return d.syncz(caller, operator)
	case istioConfigDump:
		if len(names) != 1 {
			return nil, status.Errorf(codes.InvalidArgument, "%s: name exactly one proxy (a node ID, a connection or POD.NAMESPACE), got %d names", typeURL, len(names))
		}
		return d.configDump(caller, operator, names[0])
	case istioDebugType:
		if !operator {
			return nil, status.Errorf(codes.PermissionDenied, "%s: only callers in namespace %s may read the debug views", typeURL, d.rootNamespace)
		}
		if len(names) != 1 {
			return nil, status.Errorf(codes.InvalidArgument, "%s: name exactly one debug view (e.g. syncz, connections, config_dump?proxyID=ID), got %d names", typeURL, len(names))
		}
		return d.view(names[0])
	}
	return nil, status.Errorf(codes.Unimplemented, "debug type %s is not served; served: %s, %s, %s", typeURL, istioSyncz, istioConfigDump, istioDebugType)
}

// syncz is a ClientConfig per connection the caller may see: the node (ID
// and the metadata istioctl reads) and the state of each type, in Istio's
// terms (SYNCED, STALE, ERROR with the NACK's details).
func (d *istioDebug) syncz(caller *Identity, operator bool) ([]debugResource, error) {
	var out []debugResource
	for _, st := range d.statuses() {
		if !operator && !caller.owns(st.proxy) {
			continue
		}
		cc := &statusv3.ClientConfig{Node: istioNode(st)}
		for i, typeURL := range xdsTypes {
			if ts := &st.types[i]; ts.Responses > 0 {
				cc.GenericXdsConfigs = append(cc.GenericXdsConfigs, genericConfig(typeURL, ts))
			}
		}
		a, err := anypb.New(cc)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "encode syncz of %s: %v", st.id, err)
		}
		out = append(out, debugResource{name: cc.Node.Id, any: a})
	}
	return out, nil
}

// istioNode is a proxy's node as istiod puts it in syncz: Istio's proxy
// ID (POD.NAMESPACE, which `istioctl proxy-status POD` takes) and only the
// metadata istiod sets (istioctl parses it as Istio's NodeMetadata, so our
// own keys stay out).
func istioNode(st connStatus) *corev3.Node {
	md := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	node := st.decodedNode()
	for _, k := range []string{"CLUSTER_ID", "NAMESPACE", "ISTIO_VERSION"} {
		if v, ok := node.GetMetadata().GetFields()[k]; ok && v.GetStringValue() != "" {
			md.Fields[k] = structpb.NewStringValue(v.GetStringValue())
		}
	}
	if _, ok := md.Fields["NAMESPACE"]; !ok && st.proxy.Namespace != "" {
		md.Fields["NAMESPACE"] = structpb.NewStringValue(st.proxy.Namespace)
	}
	return &corev3.Node{Id: meshname.IstioProxyID(st.proxy.Name, st.proxy.Namespace), Metadata: md}
}

// configDump is the config of the named proxy: what it holds of each type,
// as the parts of an Envoy admin config dump.
func (d *istioDebug) configDump(caller *Identity, operator bool, name string) ([]debugResource, error) {
	st, ok := findStatus(d.statuses(), name)
	if !ok || (!operator && !caller.owns(st.proxy)) {
		return nil, status.Errorf(codes.NotFound, "%s: proxy %q is not connected to this replica", istioConfigDump, name)
	}
	var out []debugResource
	for _, a := range adminDump(st) {
		out = append(out, debugResource{any: a})
	}
	return out, nil
}

// findStatus finds a connection by its ID, its node ID (the newest
// connection) or Istio's proxy ID POD.NAMESPACE.
func findStatus(all []connStatus, name string) (connStatus, bool) {
	var found connStatus
	ok := false
	for _, st := range all {
		if st.id == name {
			return st, true
		}
		match := st.proxy.ID == name || meshname.IstioProxyID(st.proxy.Name, st.proxy.Namespace) == name
		if match && (!ok || st.connectedAt.After(found.connectedAt)) {
			found, ok = st, true
		}
	}
	return found, ok
}

// view runs one of the /debug/ views (name is its path after /debug/, with
// its query) and returns its body, as istiod's debug type does.
func (d *istioDebug) view(name string) ([]debugResource, error) {
	if name == "list" {
		b, _ := json.Marshal(debugViews)
		return []debugResource{{name: name, any: &anypb.Any{TypeUrl: istioDebugType, Value: b}}}, nil
	}
	path, query, _ := strings.Cut(name, "?")
	if !slices.Contains(debugViews, path) {
		return nil, status.Errorf(codes.NotFound, "%s: no debug view %q; served: %s", istioDebugType, path, strings.Join(debugViews, ", "))
	}
	u := &url.URL{Path: "/debug/" + path, RawQuery: query}
	req, err := http.NewRequest(http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%s: %q: %v", istioDebugType, name, err)
	}
	w := &captured{header: http.Header{}}
	d.views.ServeHTTP(w, req)
	if w.code != 0 && w.code != http.StatusOK {
		return nil, status.Errorf(codes.NotFound, "%s %s: %s", istioDebugType, name, strings.TrimSpace(w.body.String()))
	}
	return []debugResource{{name: name, any: &anypb.Any{TypeUrl: istioDebugType, Value: w.body.Bytes()}}}, nil
}

// debugViews are the /debug/ views a debug client may read.
var debugViews = []string{"syncz", "config_dump", "connections", "registryz", "problems"}

// captured is an http.ResponseWriter that keeps what it is given.
type captured struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (c *captured) Header() http.Header         { return c.header }
func (c *captured) Write(b []byte) (int, error) { return c.body.Write(b) }
func (c *captured) WriteHeader(code int)        { c.code = code }

// adminDump is what a connection was last built, as the parts of Envoy's
// admin ConfigDump (dynamic active clusters, listeners, route and endpoint
// configurations); secrets appear by name and version only, never their
// keys.
func adminDump(st connStatus) []*anypb.Any {
	if st.snap == nil {
		return nil
	}
	var (
		clusters  adminv3.ClustersConfigDump
		listeners adminv3.ListenersConfigDump
		routes    adminv3.RoutesConfigDump
		endpoints adminv3.EndpointsConfigDump
		secrets   adminv3.SecretsConfigDump
	)
	for _, typeURL := range xdsTypes {
		version := st.snap.version(typeURL)
		items := st.snap.resources(typeURL)
		names := slices.Sorted(maps.Keys(items))
		for _, n := range names {
			a, err := anypb.New(items[n])
			if err != nil {
				continue
			}
			switch typeURL {
			case resourcev3.ClusterType:
				clusters.DynamicActiveClusters = append(clusters.DynamicActiveClusters, &adminv3.ClustersConfigDump_DynamicCluster{VersionInfo: version, Cluster: a})
			case resourcev3.ListenerType:
				listeners.DynamicListeners = append(listeners.DynamicListeners, &adminv3.ListenersConfigDump_DynamicListener{
					Name: n, ActiveState: &adminv3.ListenersConfigDump_DynamicListenerState{VersionInfo: version, Listener: a}})
			case resourcev3.RouteType:
				routes.DynamicRouteConfigs = append(routes.DynamicRouteConfigs, &adminv3.RoutesConfigDump_DynamicRouteConfig{VersionInfo: version, RouteConfig: a})
			case resourcev3.EndpointType:
				endpoints.DynamicEndpointConfigs = append(endpoints.DynamicEndpointConfigs, &adminv3.EndpointsConfigDump_DynamicEndpointConfig{VersionInfo: version, EndpointConfig: a})
			case resourcev3.SecretType:
				secrets.DynamicActiveSecrets = append(secrets.DynamicActiveSecrets, &adminv3.SecretsConfigDump_DynamicSecret{Name: n, VersionInfo: version})
			}
		}
	}
	var out []*anypb.Any
	for _, m := range []proto.Message{&clusters, &listeners, &routes, &endpoints, &secrets} {
		if a, err := anypb.New(m); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// answerUnknown answers the first request for a type this server does not
// serve with an empty response, as istiod does, so a client waiting for
// the type learns at once that nothing comes; its ACK gets nothing more.
func (s *xdsStream) answerUnknown(typeURL string, r *request) error {
	if s.unknown[typeURL] {
		return nil
	}
	if s.unknown == nil {
		s.unknown = map[string]bool{}
	}
	s.unknown[typeURL] = true
	s.a.log.Info("answering a request for a type not served with an empty response", "conn", s.c.id, "type", typeURL)
	s.nonce++
	nonce := strconv.FormatUint(s.nonce, 10)
	var resp proto.Message = &discoveryv3.DiscoveryResponse{TypeUrl: typeURL, Nonce: nonce}
	if s.delta {
		resp = &discoveryv3.DeltaDiscoveryResponse{TypeUrl: typeURL, Nonce: nonce}
	}
	return s.sendOne(typeURL, resp)
}
