package snapshot

import (
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	commonfaultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/librarymesh/controlplane/registry"

	"github.com/librarymesh/controlplane/meshname"
)

// RouteMatchPrefix matches every path under prefix.
func RouteMatchPrefix(prefix string) *routev3.RouteMatch {
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}}
}

// RouteToCluster sends everything to one cluster, with Istio's default of no
// route timeout.
func RouteToCluster(name, cluster string) *routev3.Route {
	return &routev3.Route{
		Name:  name,
		Match: RouteMatchPrefix("/"),
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
			Timeout:          durationpb.New(0),
		}},
	}
}

// NonForwardingRoute is what a proxyless gRPC server's inbound route must be.
func NonForwardingRoute(name string) *routev3.Route {
	return &routev3.Route{
		Name:   name,
		Match:  RouteMatchPrefix("/"),
		Action: &routev3.Route_NonForwardingAction{NonForwardingAction: &routev3.NonForwardingAction{}},
	}
}

// VirtualHost answers for domains with routes.
func VirtualHost(name string, domains []string, routes ...*routev3.Route) *routev3.VirtualHost {
	return &routev3.VirtualHost{Name: name, Domains: domains, Routes: routes}
}

// AllowAnyVirtualHost sends unknown hosts to PassthroughCluster, as Istio's
// default outbound traffic policy ALLOW_ANY does.
func AllowAnyVirtualHost() *routev3.VirtualHost {
	return VirtualHost(meshname.AllowAnyVirtualHost, []string{"*"}, RouteToCluster(meshname.AllowAnyVirtualHost, meshname.PassthroughCluster))
}

// RouteConfiguration holds virtual hosts.
func RouteConfiguration(name string, vhosts ...*routev3.VirtualHost) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: name, VirtualHosts: vhosts}
}

// faultFilterName is Envoy's (and grpc-go's) HTTP fault injection filter.
const faultFilterName = "envoy.filters.http.fault"

// FaultFilter is the fault filter with no faults of its own: routes turn
// it on with their typed_per_filter_config, as Istio does.
func FaultFilter() *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: faultFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&faultv3.HTTPFault{})}}
}

// HTTPFault is a route's fault config, or nil for none.
func HTTPFault(delay *registry.FaultDelay, abort *registry.FaultAbort) *faultv3.HTTPFault {
	if delay == nil && abort == nil {
		return nil
	}
	f := &faultv3.HTTPFault{}
	if delay != nil {
		f.Delay = &commonfaultv3.FaultDelay{
			FaultDelaySecifier: &commonfaultv3.FaultDelay_FixedDelay{FixedDelay: durationpb.New(delay.Delay)},
			Percentage:         fractionalPercent(delay.Percent),
		}
	}
	if abort != nil {
		f.Abort = &faultv3.FaultAbort{Percentage: fractionalPercent(abort.Percent)}
		if abort.IsGRPC {
			f.Abort.ErrorType = &faultv3.FaultAbort_GrpcStatus{GrpcStatus: abort.GRPCStatus}
		} else {
			f.Abort.ErrorType = &faultv3.FaultAbort_HttpStatus{HttpStatus: abort.HTTPStatus}
		}
	}
	return f
}

// fractionalPercent is a percentage in millionths, as Istio sends it.
func fractionalPercent(pct float64) *typev3.FractionalPercent {
	return &typev3.FractionalPercent{Numerator: uint32(math.Round(pct * 10000)), Denominator: typev3.FractionalPercent_MILLION}
}

// RouteMatch is Envoy's form of an Istio HTTP match (nil: every request).
func RouteMatch(m *registry.HTTPMatch) *routev3.RouteMatch {
	rm := RouteMatchPrefix("/")
	if m == nil {
		return rm
	}
	if u := m.URI; u != nil {
		switch u.Kind {
		case registry.MatchExact:
			rm.PathSpecifier = &routev3.RouteMatch_Path{Path: u.Value}
		case registry.MatchPrefix:
			rm.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: u.Value}
		case registry.MatchRegex:
			rm.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: u.Value}}
		}
	}
	if m.IgnoreURICase {
		rm.CaseSensitive = wrapperspb.Bool(false)
	}
	for _, pseudo := range []struct {
		name string
		m    *registry.StringMatch
	}{{":method", m.Method}, {":authority", m.Authority}} {
		if pseudo.m != nil {
			rm.Headers = append(rm.Headers, HeaderMatcher(registry.KeyMatch{Name: pseudo.name, Match: pseudo.m}))
		}
	}
	for _, h := range m.Headers {
		rm.Headers = append(rm.Headers, HeaderMatcher(h))
	}
	for _, q := range m.QueryParams {
		rm.QueryParameters = append(rm.QueryParameters, QueryParameterMatcher(q))
	}
	return rm
}

// stringMatcher is Envoy's form of an Istio string match.
func stringMatcher(m *registry.StringMatch) *matcherv3.StringMatcher {
	switch m.Kind {
	case registry.MatchPrefix:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: m.Value}}
	case registry.MatchRegex:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: m.Value}}}
	}
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: m.Value}}
}

// HeaderMatcher matches one header; without a value it asks for presence.
func HeaderMatcher(k registry.KeyMatch) *routev3.HeaderMatcher {
	h := &routev3.HeaderMatcher{Name: k.Name, InvertMatch: k.Without}
	if k.Match == nil {
		h.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
	} else {
		h.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: stringMatcher(k.Match)}
	}
	return h
}

// QueryParameterMatcher matches one query parameter.
func QueryParameterMatcher(k registry.KeyMatch) *routev3.QueryParameterMatcher {
	q := &routev3.QueryParameterMatcher{Name: k.Name}
	if k.Match == nil {
		q.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}
	} else {
		q.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_StringMatch{StringMatch: stringMatcher(k.Match)}
	}
	return q
}

// RouteTimeout is a VirtualService timeout; unset is Istio's default of none (0).
func RouteTimeout(d *time.Duration) *durationpb.Duration {
	if d == nil {
		return durationpb.New(0)
	}
	return durationpb.New(*d)
}

// RetryPolicy is an Istio retry policy (nil: none; attempts 0 turns
// retries off, as in Istio). Envoy also gets Istio's previous-hosts
// predicate, which grpc-go does not know.
func RetryPolicy(r *registry.Retries, envoy bool) *routev3.RetryPolicy {
	if r == nil || r.Attempts <= 0 {
		return nil
	}
	p := &routev3.RetryPolicy{
		RetryOn:              strings.Join(r.RetryOn, ","),
		NumRetries:           wrapperspb.UInt32(uint32(r.Attempts)),
		RetriableStatusCodes: slices.Clone(r.StatusCodes),
	}
	if r.PerTryTimeout > 0 {
		p.PerTryTimeout = durationpb.New(r.PerTryTimeout)
	}
	if envoy {
		p.RetryHostPredicate = []*routev3.RetryPolicy_RetryHostPredicate{{
			Name:       "envoy.retry_host_predicates.previous_hosts",
			ConfigType: &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: mustAny(&previoushostsv3.PreviousHostsPredicate{})},
		}}
		p.HostSelectionRetryMaxAttempts = 5
	}
	return p
}

// MirrorPolicy copies a percentage of requests to a cluster.
func MirrorPolicy(cluster string, pct float64) *routev3.RouteAction_RequestMirrorPolicy {
	return &routev3.RouteAction_RequestMirrorPolicy{Cluster: cluster,
		RuntimeFraction: &corev3.RuntimeFractionalPercent{DefaultValue: fractionalPercent(pct)}}
}

// RedirectAction answers with a redirect.
func RedirectAction(r *registry.Redirect) *routev3.RedirectAction {
	a := &routev3.RedirectAction{HostRedirect: r.Authority, PortRedirect: r.Port}
	if r.URI != "" {
		a.PathRewriteSpecifier = &routev3.RedirectAction_PathRedirect{PathRedirect: r.URI}
	}
	if r.Scheme != "" {
		a.SchemeRewriteSpecifier = &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: r.Scheme}
	}
	switch r.Code {
	case 302:
		a.ResponseCode = routev3.RedirectAction_FOUND
	case 303:
		a.ResponseCode = routev3.RedirectAction_SEE_OTHER
	case 307:
		a.ResponseCode = routev3.RedirectAction_TEMPORARY_REDIRECT
	case 308:
		a.ResponseCode = routev3.RedirectAction_PERMANENT_REDIRECT
	}
	return a
}

// DirectResponseAction answers with a fixed status and body.
func DirectResponseAction(d *registry.DirectResponse) *routev3.DirectResponseAction {
	a := &routev3.DirectResponseAction{Status: d.Status}
	if d.Body != "" {
		a.Body = &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: d.Body}}
	}
	return a
}

// addHeaderOps appends Istio header edits: set overwrites, add appends.
func addHeaderOps(reqAdd *[]*corev3.HeaderValueOption, reqRemove *[]string, respAdd *[]*corev3.HeaderValueOption, respRemove *[]string, h registry.HeaderOps) {
	*reqAdd = append(*reqAdd, headerValues(h.RequestSet, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)...)
	*reqAdd = append(*reqAdd, headerValues(h.RequestAdd, corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD)...)
	*reqRemove = append(*reqRemove, h.RequestRemove...)
	*respAdd = append(*respAdd, headerValues(h.ResponseSet, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)...)
	*respAdd = append(*respAdd, headerValues(h.ResponseAdd, corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD)...)
	*respRemove = append(*respRemove, h.ResponseRemove...)
}

func headerValues(m map[string]string, action corev3.HeaderValueOption_HeaderAppendAction) []*corev3.HeaderValueOption {
	var out []*corev3.HeaderValueOption
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: m[k]}, AppendAction: action})
	}
	return out
}

// cloneRoute copies a route before it gets its own name and match.
func cloneRoute(r *routev3.Route) *routev3.Route { return proto.Clone(r).(*routev3.Route) }

// legacyHeaderMatchers rewrites string_match header matchers into the
// older exact_match, prefix_match and safe_regex_match fields: gRPC C-core
// (1.51, Debian's) NACKs a route with string_match ("Invalid route header
// matcher specified"), while grpc-go and C-core take the older fields.
// Envoy sidecars keep string_match, as Istio sends it.
func legacyHeaderMatchers(rm *routev3.RouteMatch) {
	for _, h := range rm.GetHeaders() {
		sm := h.GetStringMatch()
		if sm == nil {
			continue
		}
		switch p := sm.GetMatchPattern().(type) {
		case *matcherv3.StringMatcher_Exact:
			h.HeaderMatchSpecifier = &routev3.HeaderMatcher_ExactMatch{ExactMatch: p.Exact} //nolint:staticcheck // see above
		case *matcherv3.StringMatcher_Prefix:
			h.HeaderMatchSpecifier = &routev3.HeaderMatcher_PrefixMatch{PrefixMatch: p.Prefix} //nolint:staticcheck // see above
		case *matcherv3.StringMatcher_SafeRegex:
			h.HeaderMatchSpecifier = &routev3.HeaderMatcher_SafeRegexMatch{SafeRegexMatch: p.SafeRegex} //nolint:staticcheck // see above
		}
	}
}
