package registry

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	networkingapi "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	networkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	networkingv1beta1 "istio.io/client-go/pkg/apis/networking/v1beta1"
	"k8s.io/apimachinery/pkg/runtime"
)

// virtualService converts a VirtualService. Host names without a dot are
// qualified with the object's namespace, as Istio does; any problem
// rejects the object (its last good version stays in force).
func (c *converter) virtualService(key ObjectKey, in *networkingapi.VirtualService, created time.Time, p *problems) *record {
	vs := &VirtualService{
		Namespace: key.Namespace,
		Name:      key.Name,
		Gateways:  vsGateways("spec.gateways", in.GetGateways(), key.Namespace, p),
		ExportTo:  parseExportTo("spec.exportTo", in.GetExportTo(), key.Namespace, p),
		Created:   created,
	}
	vs.Hosts = c.vsHosts(key.Namespace, in.GetHosts(), p)
	if len(in.GetHttp())+len(in.GetTcp())+len(in.GetTls()) == 0 {
		p.add("spec", "NoRoutes", "one of http, tcp or tls routes is required")
	}
	for i, r := range in.GetHttp() {
		vs.HTTP = append(vs.HTTP, c.httpRoute(key.Namespace, fmt.Sprintf("spec.http[%d]", i), r, p))
	}
	for i, r := range in.GetTcp() {
		field := fmt.Sprintf("spec.tcp[%d]", i)
		vs.TCP = append(vs.TCP, L4Route{Field: field, Matches: l4Matches(field, r.GetMatch(), key.Namespace, p),
			Route: c.l4Destinations(key.Namespace, field, r.GetRoute(), p)})
	}
	for i, r := range in.GetTls() {
		field := fmt.Sprintf("spec.tls[%d]", i)
		vs.TLS = append(vs.TLS, L4Route{Field: field, Matches: c.tlsMatches(field, r.GetMatch(), key.Namespace, p),
			Route: c.l4Destinations(key.Namespace, field, r.GetRoute(), p)})
	}
	return &record{Policies: []*policyRow{{Namespace: key.Namespace, VirtualService: vs}}}
}

// qualifyHost lower-cases a host and qualifies a short name as Istio does.
func (c *converter) qualifyHost(ns, h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	if h != "" && !strings.Contains(h, ".") && h != "*" {
		return c.kubeHostname(ns, h)
	}
	return h
}

func (c *converter) vsHosts(ns string, in []string, p *problems) []string {
	if len(in) == 0 {
		p.add("spec.hosts", "MissingHosts", "at least one host is required")
	}
	var out []string
	for i, h := range in {
		q := c.qualifyHost(ns, h)
		if q == "" || strings.ContainsAny(q, " /:") || strings.Contains(q[1:], "*") {
			p.add(fmt.Sprintf("spec.hosts[%d]", i), "InvalidHost", "%q is not a host name or a wildcard such as *.example.com", h)
			continue
		}
		if !slices.Contains(out, q) {
			out = append(out, q)
		}
	}
	return out
}

// vsGateways keeps gateway names, qualifying short ones with the namespace
// ("mesh" stays as is).
func vsGateways(field string, in []string, ns string, p *problems) []string {
	var out []string
	for i, g := range in {
		g = strings.TrimSpace(g)
		switch {
		case g == "":
			p.add(fmt.Sprintf("%s[%d]", field, i), "InvalidGateway", "gateway name is empty")
			continue
		case g != MeshGateway && !strings.Contains(g, "/"):
			g = ns + "/" + g
		}
		out = append(out, g)
	}
	return out
}

func (c *converter) httpRoute(ns, field string, in *networkingapi.HTTPRoute, p *problems) HTTPRoute {
	r := HTTPRoute{Name: in.GetName(), Field: field, Headers: headerOps(in.GetHeaders())}
	for i, m := range in.GetMatch() {
		r.Matches = append(r.Matches, httpMatch(fmt.Sprintf("%s.match[%d]", field, i), m, ns, p))
	}
	for i, d := range in.GetRoute() {
		df := fmt.Sprintf("%s.route[%d]", field, i)
		dst := c.destination(ns, df+".destination", d.GetDestination(), p)
		dst.Weight, dst.Headers, dst.Field = d.GetWeight(), headerOps(d.GetHeaders()), df
		r.Route = append(r.Route, dst)
	}
	checkWeights(field+".route", r.Route, p)
	r.Timeout = optDuration(field+".timeout", in.GetTimeout(), p)
	r.Retries = retries(field+".retries", in.GetRetries(), p)
	r.Delay, r.Abort = fault(field+".fault", in.GetFault(), p)
	if rw := in.GetRewrite(); rw != nil {
		r.Rewrite = &Rewrite{URI: rw.GetUri(), Authority: rw.GetAuthority()}
		if rw.GetUriRegexRewrite() != nil {
			p.add(field+".rewrite.uriRegexRewrite", ReasonUnsupportedField, "uriRegexRewrite is not supported; ignored")
		}
	}
	c.httpExtras(ns, field, in, &r, p)
	return r
}

// httpExtras converts mirror, redirect and direct response and checks
// that the route does exactly one of forward, redirect or respond.
func (c *converter) httpExtras(ns, field string, in *networkingapi.HTTPRoute, r *HTTPRoute, p *problems) {
	if m := in.GetMirror(); m != nil {
		d := c.destination(ns, field+".mirror", m, p)
		d.Field = field + ".mirror"
		r.Mirror, r.MirrorPercent = &d, 100
		if mp := in.GetMirrorPercentage(); mp != nil {
			r.MirrorPercent = vsPercent(field+".mirrorPercentage", mp.GetValue(), p)
		}
	}
	if len(in.GetMirrors()) > 0 {
		p.add(field+".mirrors", ReasonUnsupportedField, "mirrors (several) is not supported; ignored (use mirror)")
	}
	if rd := in.GetRedirect(); rd != nil {
		r.Redirect = &Redirect{URI: rd.GetUri(), Authority: rd.GetAuthority(), Scheme: rd.GetScheme(), Port: rd.GetPort(), Code: rd.GetRedirectCode()}
	}
	if dr := in.GetDirectResponse(); dr != nil {
		r.DirectResponse = &DirectResponse{Status: dr.GetStatus(), Body: dr.GetBody().GetString_()}
		if dr.GetStatus() < 200 || dr.GetStatus() > 599 {
			p.add(field+".directResponse.status", "InvalidStatus", "status %d is not in 200-599", dr.GetStatus())
		}
	}
	actions := 0
	for _, set := range []bool{len(r.Route) > 0, r.Redirect != nil, r.DirectResponse != nil} {
		if set {
			actions++
		}
	}
	if actions != 1 {
		p.add(field, "InvalidAction", "exactly one of route, redirect and directResponse is required")
	}
	if in.GetDelegate() != nil {
		p.add(field+".delegate", "NotSupported", "delegate is not supported")
	}
}

func (c *converter) destination(ns, field string, d *networkingapi.Destination, p *problems) Destination {
	out := Destination{Host: c.qualifyHost(ns, d.GetHost()), Subset: d.GetSubset(), Port: d.GetPort().GetNumber()}
	switch {
	case out.Host == "":
		p.add(field+".host", "MissingHost", "destination host is required")
	case strings.Contains(out.Host, "*"):
		p.add(field+".host", "InvalidHost", "destination host %q may not be a wildcard", d.GetHost())
	}
	if out.Port > 65535 {
		p.add(field+".port.number", "InvalidPort", "port %d is not in 1-65535", out.Port)
	}
	return out
}

// checkWeights: several destinations need weights that sum to 100; a
// single one may leave its weight unset.
func checkWeights(field string, ds []Destination, p *problems) {
	var sum int64
	for i, d := range ds {
		if d.Weight < 0 || d.Weight > 100 {
			p.add(fmt.Sprintf("%s[%d].weight", field, i), "InvalidWeight", "weight %d is not in 0-100", d.Weight)
		}
		sum += int64(d.Weight)
	}
	if len(ds) > 1 && sum != 100 || len(ds) == 1 && sum != 0 && sum != 100 {
		p.add(field, "InvalidWeight", "the weights of the destinations sum to %d, want 100", sum)
	}
}

func (c *converter) l4Destinations(ns, field string, in []*networkingapi.RouteDestination, p *problems) []Destination {
	var out []Destination
	for i, d := range in {
		df := fmt.Sprintf("%s.route[%d]", field, i)
		dst := c.destination(ns, df+".destination", d.GetDestination(), p)
		dst.Weight, dst.Field = d.GetWeight(), df
		out = append(out, dst)
	}
	if len(out) == 0 {
		p.add(field+".route", "MissingRoute", "at least one destination is required")
	}
	checkWeights(field+".route", out, p)
	return out
}

func l4Matches(field string, in []*networkingapi.L4MatchAttributes, ns string, p *problems) []L4Match {
	var out []L4Match
	for i, m := range in {
		mf := fmt.Sprintf("%s.match[%d]", field, i)
		checkMatchPort(mf+".port", m.GetPort(), p)
		skip := unsupportedL4(mf, len(m.GetSourceLabels()) > 0, len(m.GetDestinationSubnets()) > 0, m.GetSourceSubnet() != "", p)
		out = append(out, L4Match{Port: m.GetPort(), SourceNamespace: m.GetSourceNamespace(),
			Gateways: vsGateways(mf+".gateways", m.GetGateways(), ns, p), Unsupported: skip})
	}
	return out
}

func (c *converter) tlsMatches(field string, in []*networkingapi.TLSMatchAttributes, ns string, p *problems) []L4Match {
	if len(in) == 0 {
		p.add(field+".match", "MissingMatch", "a tls route needs a match with sniHosts")
	}
	var out []L4Match
	for i, m := range in {
		mf := fmt.Sprintf("%s.match[%d]", field, i)
		checkMatchPort(mf+".port", m.GetPort(), p)
		skip := unsupportedL4(mf, len(m.GetSourceLabels()) > 0, len(m.GetDestinationSubnets()) > 0, false, p)
		if len(m.GetSniHosts()) == 0 {
			p.add(mf+".sniHosts", "MissingSNIHosts", "sniHosts is required")
		}
		var snis []string
		for _, h := range m.GetSniHosts() {
			snis = append(snis, c.qualifyHost(ns, h))
		}
		out = append(out, L4Match{Port: m.GetPort(), SNIHosts: snis, SourceNamespace: m.GetSourceNamespace(),
			Gateways: vsGateways(mf+".gateways", m.GetGateways(), ns, p), Unsupported: skip})
	}
	return out
}

// unsupportedL4 warns about L4 match conditions the control plane cannot
// check and reports whether there is one (the match is then left out: it
// never matches, rather than matching more than it says).
func unsupportedL4(field string, labels, subnets, sourceSubnet bool, p *problems) bool {
	for _, u := range []struct {
		set         bool
		name, extra string
	}{
		{labels, "sourceLabels", " (routes are shared by a namespace's proxies)"},
		{subnets, "destinationSubnets", ""},
		{sourceSubnet, "sourceSubnet", ""},
	} {
		if u.set {
			p.add(field+"."+u.name, ReasonUnsupportedField, "%s is not supported%s; the match is left out", u.name, u.extra)
		}
	}
	return labels || subnets || sourceSubnet
}

func checkMatchPort(field string, port uint32, p *problems) {
	if port > 65535 {
		p.add(field, "InvalidPort", "port %d is not in 1-65535", port)
	}
}

func httpMatch(field string, m *networkingapi.HTTPMatchRequest, ns string, p *problems) HTTPMatch {
	out := HTTPMatch{
		Name:            m.GetName(),
		URI:             stringMatch(field+".uri", m.GetUri(), p),
		Method:          stringMatch(field+".method", m.GetMethod(), p),
		Authority:       stringMatch(field+".authority", m.GetAuthority(), p),
		IgnoreURICase:   m.GetIgnoreUriCase(),
		Port:            m.GetPort(),
		SourceNamespace: m.GetSourceNamespace(),
		Gateways:        vsGateways(field+".gateways", m.GetGateways(), ns, p),
	}
	checkMatchPort(field+".port", m.GetPort(), p)
	out.Headers = keyMatches(field+".headers", m.GetHeaders(), false, p)
	out.Headers = append(out.Headers, keyMatches(field+".withoutHeaders", m.GetWithoutHeaders(), true, p)...)
	out.QueryParams = keyMatches(field+".queryParams", m.GetQueryParams(), false, p)
	if m.GetScheme() != nil {
		p.add(field+".scheme", ReasonUnsupportedField, "scheme matching is not supported; the match is left out")
		out.Unsupported = true
	}
	if len(m.GetSourceLabels()) > 0 {
		p.add(field+".sourceLabels", ReasonUnsupportedField, "sourceLabels is not supported (routes are shared by a namespace's proxies); the match is left out")
		out.Unsupported = true
	}
	return out
}

func keyMatches(field string, in map[string]*networkingapi.StringMatch, without bool, p *problems) []KeyMatch {
	var out []KeyMatch
	for _, name := range slices.Sorted(maps.Keys(in)) {
		kf := fmt.Sprintf("%s[%s]", field, name)
		if name == "" || strings.ToLower(name) != name && !strings.HasSuffix(field, ".queryParams") {
			p.add(kf, "InvalidHeaderName", "header names must be non-empty and lower case")
		}
		out = append(out, KeyMatch{Name: name, Match: stringMatch(kf, in[name], p), Without: without})
	}
	return out
}

// stringMatch converts a StringMatch; nil or empty means "any value".
func stringMatch(field string, m *networkingapi.StringMatch, p *problems) *StringMatch {
	switch t := m.GetMatchType().(type) {
	case *networkingapi.StringMatch_Exact:
		return &StringMatch{Kind: MatchExact, Value: t.Exact}
	case *networkingapi.StringMatch_Prefix:
		return &StringMatch{Kind: MatchPrefix, Value: t.Prefix}
	case *networkingapi.StringMatch_Regex:
		if _, err := regexp.Compile(t.Regex); err != nil {
			p.add(field+".regex", "InvalidRegex", "%q is not an RE2 regular expression: %v", t.Regex, err)
		}
		return &StringMatch{Kind: MatchRegex, Value: t.Regex}
	}
	return nil
}

// optDuration converts an optional duration, which must be valid and not negative.
func optDuration(field string, d *durationpb.Duration, p *problems) *time.Duration {
	if d == nil {
		return nil
	}
	if err := d.CheckValid(); err != nil || d.AsDuration() < 0 {
		p.add(field, "InvalidDuration", "%v is not a valid duration of 0 or more", d.AsDuration())
		return nil
	}
	v := d.AsDuration()
	return &v
}

// vsPercent checks a percentage (0-100).
func vsPercent(field string, v float64, p *problems) float64 {
	if v < 0 || v > 100 || v != v {
		p.add(field, "InvalidPercentage", "%v is not in 0-100", v)
		return 0
	}
	return v
}

func headerOps(h *networkingapi.Headers) HeaderOps {
	return HeaderOps{
		RequestSet: maps.Clone(h.GetRequest().GetSet()), RequestAdd: maps.Clone(h.GetRequest().GetAdd()),
		RequestRemove: slices.Clone(h.GetRequest().GetRemove()), ResponseSet: maps.Clone(h.GetResponse().GetSet()),
		ResponseAdd: maps.Clone(h.GetResponse().GetAdd()), ResponseRemove: slices.Clone(h.GetResponse().GetRemove()),
	}
}

// retryOnPolicies are the retry conditions Envoy (and for the gRPC ones grpc-go) knows.
var retryOnPolicies = []string{
	"5xx", "gateway-error", "reset", "reset-before-request", "connect-failure", "envoy-ratelimited", "retriable-4xx",
	"refused-stream", "retriable-status-codes", "retriable-headers", "http3-post-connect-failure",
	"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
}

// defaultRetryOn is Istio's retryOn when a retry policy names none.
const defaultRetryOn = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"

func retries(field string, in *networkingapi.HTTPRetry, p *problems) *Retries {
	if in == nil {
		return nil
	}
	out := &Retries{Attempts: in.GetAttempts()}
	if out.Attempts < 0 {
		p.add(field+".attempts", "InvalidRetries", "attempts %d is negative", out.Attempts)
	}
	if d := optDuration(field+".perTryTimeout", in.GetPerTryTimeout(), p); d != nil {
		out.PerTryTimeout = *d
	}
	on := in.GetRetryOn()
	if on == "" {
		on, out.StatusCodes = defaultRetryOn, []uint32{503}
	}
	for _, tok := range strings.Split(on, ",") {
		tok = strings.TrimSpace(tok)
		if code, err := strconv.ParseUint(tok, 10, 32); err == nil && code >= 100 && code <= 599 {
			out.StatusCodes = append(out.StatusCodes, uint32(code))
			continue
		}
		if !slices.Contains(retryOnPolicies, tok) {
			p.add(field+".retryOn", "InvalidRetryOn", "%q is not a retry condition (%s) or an HTTP status code", tok, strings.Join(retryOnPolicies, ", "))
			continue
		}
		if !slices.Contains(out.RetryOn, tok) {
			out.RetryOn = append(out.RetryOn, tok)
		}
	}
	if len(out.StatusCodes) > 0 && !slices.Contains(out.RetryOn, "retriable-status-codes") {
		out.RetryOn = append(out.RetryOn, "retriable-status-codes")
	}
	return out
}

func fault(field string, in *networkingapi.HTTPFaultInjection, p *problems) (*FaultDelay, *FaultAbort) {
	if in == nil {
		return nil, nil
	}
	if in.GetDelay() == nil && in.GetAbort() == nil {
		p.add(field, "InvalidFault", "fault needs a delay or an abort")
	}
	var delay *FaultDelay
	if d := in.GetDelay(); d != nil {
		delay = &FaultDelay{Percent: faultPercent(field+".delay", d.GetPercentage(), d.GetPercent(), p)}
		if d.GetExponentialDelay() != nil {
			p.add(field+".delay.exponentialDelay", "NotSupported", "exponentialDelay is not supported")
		}
		if v := optDuration(field+".delay.fixedDelay", d.GetFixedDelay(), p); v != nil {
			delay.Delay = *v
		} else if d.GetFixedDelay() == nil {
			p.add(field+".delay.fixedDelay", "InvalidFault", "fixedDelay is required")
		}
	}
	return delay, faultAbort(field+".abort", in.GetAbort(), p)
}

func faultAbort(field string, a *networkingapi.HTTPFaultInjection_Abort, p *problems) *FaultAbort {
	if a == nil {
		return nil
	}
	out := &FaultAbort{Percent: faultPercent(field, a.GetPercentage(), 0, p)}
	switch t := a.GetErrorType().(type) {
	case *networkingapi.HTTPFaultInjection_Abort_HttpStatus:
		out.HTTPStatus = uint32(t.HttpStatus)
		if t.HttpStatus < 200 || t.HttpStatus > 599 {
			p.add(field+".httpStatus", "InvalidStatus", "status %d is not in 200-599", t.HttpStatus)
		}
	case *networkingapi.HTTPFaultInjection_Abort_GrpcStatus:
		code, ok := grpcCode(t.GrpcStatus)
		if !ok {
			p.add(field+".grpcStatus", "InvalidStatus", "%q is not a gRPC status name such as UNAVAILABLE", t.GrpcStatus)
		}
		out.GRPCStatus, out.IsGRPC = code, true
	default:
		p.add(field, "InvalidFault", "abort needs httpStatus or grpcStatus")
	}
	return out
}

// faultPercent is the percentage of requests a fault applies to: the
// percentage field, else the old integer percent, else all.
func faultPercent(field string, pct *networkingapi.Percent, old int32, p *problems) float64 {
	switch {
	case pct != nil:
		return vsPercent(field+".percentage", pct.GetValue(), p)
	case old != 0:
		return vsPercent(field+".percent", float64(old), p)
	}
	return 100
}

// grpcCodes are the gRPC status names Istio accepts, by code.
var grpcCodes = []string{"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
	"UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"}

func grpcCode(name string) (uint32, bool) {
	i := slices.Index(grpcCodes, strings.ToUpper(strings.TrimSpace(name)))
	if i <= 0 {
		return 0, false
	}
	return uint32(i), true
}

// convertVirtualService converts any API version of a VirtualService; ok
// is false for another type.
func (c *converter) convertVirtualService(key ObjectKey, obj runtime.Object, p *problems) (*record, bool) {
	switch o := obj.(type) {
	case *networkingv1.VirtualService:
		return c.virtualService(key, &o.Spec, o.CreationTimestamp.Time, p), true
	case *networkingv1beta1.VirtualService:
		return c.virtualService(key, &o.Spec, o.CreationTimestamp.Time, p), true
	case *networkingv1alpha3.VirtualService:
		return c.virtualService(key, &o.Spec, o.CreationTimestamp.Time, p), true
	}
	return nil, false
}
