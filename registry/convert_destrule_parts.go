package registry

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	networkingapi "istio.io/api/networking/v1alpha3"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Topology labels Istio gives every endpoint and proxy from its locality
// and network, so failoverPriority can name them.
const (
	LabelTopologyRegion  = "topology.kubernetes.io/region"
	LabelTopologyZone    = "topology.kubernetes.io/zone"
	LabelTopologySubzone = "topology.istio.io/subzone"
	LabelTopologyNetwork = "topology.istio.io/network"
)

// ReasonFailoverWithoutOutlierDetection warns that failover settings have
// no effect: without outlier detection no endpoint is ever found unhealthy.
const ReasonFailoverWithoutOutlierDetection = "FailoverWithoutOutlierDetection"

// localityLB converts a localityLbSetting, checked as Istio checks it:
// distribute or failover (not both), distribute weights of 1-100 adding up
// to 100 per from, localities with a trailing `*` at most, failover
// between two different regions (no zone, no wildcard), failoverPriority
// labels as `key` or `key=value`.
func localityLB(l *networkingapi.LocalityLoadBalancerSetting, field string, p *problems) *LocalityLB {
	if l == nil {
		return nil
	}
	out := &LocalityLB{FailoverPriority: failoverPriority(l.GetFailoverPriority(), len(l.GetFailover()) > 0, field+".failoverPriority", p)}
	if e := l.GetEnabled(); e != nil {
		v := e.GetValue()
		out.Enabled = &v
	}
	if len(l.GetDistribute()) > 0 && len(l.GetFailover()) > 0 {
		p.add(field, "ConflictingLocalitySettings", "distribute and failover cannot both be set")
	}
	froms := map[string]int{}
	for i, d := range l.GetDistribute() {
		f := fmt.Sprintf("%s.distribute[%d]", field, i)
		if j, dup := froms[d.GetFrom()]; dup {
			p.add(f+".from", "DuplicateLocality", "%q is already distributed by %s.distribute[%d]", d.GetFrom(), field, j)
		}
		froms[d.GetFrom()] = i
		out.Distribute = append(out.Distribute, distribute(d, f, p))
	}
	for i, fo := range l.GetFailover() {
		f := fmt.Sprintf("%s.failover[%d]", field, i)
		from, to := fo.GetFrom(), fo.GetTo()
		switch {
		case from == "" || to == "" || from == to:
			p.add(f, "InvalidFailover", "from (%q) and to (%q) must be two different regions", from, to)
		case strings.ContainsAny(from+to, "/*"):
			p.add(f, "InvalidFailover", "from (%q) and to (%q) name regions only: no zone, no wildcard", from, to)
		}
		out.Failover = append(out.Failover, LocalityFailover{From: from, To: to})
	}
	return out
}

func distribute(d *networkingapi.LocalityLoadBalancerSetting_Distribute, field string, p *problems) LocalityDistribute {
	if d.GetFrom() == "" || len(d.GetTo()) == 0 {
		p.add(field, "MissingLocality", "from and to are required")
	} else {
		checkLocalityPattern(d.GetFrom(), field+".from", p)
	}
	var sum uint32
	for _, to := range slices.Sorted(maps.Keys(d.GetTo())) {
		w := d.GetTo()[to]
		if w == 0 || w > 100 {
			p.add(field+".to", "OutOfRange", "weight %d of %q is not in 1-100", w, to)
		}
		checkLocalityPattern(to, field+".to", p)
		sum += w
	}
	if len(d.GetTo()) > 0 && sum != 100 {
		p.add(field+".to", "OutOfRange", "weights add up to %d, want 100", sum)
	}
	return LocalityDistribute{From: d.GetFrom(), To: maps.Clone(d.GetTo())}
}

// checkLocalityPattern checks a `region/zone/subzone` that may end in `*`.
func checkLocalityPattern(loc, field string, p *problems) {
	parts := strings.Split(loc, "/")
	for i, part := range parts {
		switch {
		case len(parts) > 3:
			p.add(field, "InvalidLocality", "locality %q has more than region/zone/subzone", loc)
			return
		case part == "":
			p.add(field, "InvalidLocality", "locality %q has an empty region, zone or subzone", loc)
			return
		case strings.Contains(part, "*") && (part != "*" || i != len(parts)-1):
			p.add(field, "InvalidLocality", "locality %q may hold one wildcard '*', as its last part", loc)
			return
		}
	}
}

// failoverPriority checks failoverPriority labels. With failover set too,
// Istio refuses the region, zone and subzone labels (failover ranks those).
func failoverPriority(labels []string, failover bool, field string, p *problems) []string {
	for i, l := range labels {
		f := fmt.Sprintf("%s[%d]", field, i)
		key, _, _ := strings.Cut(l, "=")
		if errs := validation.IsQualifiedName(key); len(errs) > 0 {
			p.add(f, "InvalidLabel", "%q is not a label name (or name=value): %s", l, strings.Join(errs, "; "))
			continue
		}
		if failover && (key == LabelTopologyRegion || key == LabelTopologyZone || key == LabelTopologySubzone) {
			p.add(f, "ConflictingLocalitySettings", "label %q cannot be a failoverPriority when failover is set", key)
		}
	}
	return slices.Clone(labels)
}

// warnFailoverWithoutOutlier warns about failover settings in a policy
// without outlierDetection: they never take effect, as in Istio.
func warnFailoverWithoutOutlier(tp *TrafficPolicy, field string, p *problems) {
	l := tp.LoadBalancer.GetLocality()
	if l == nil || tp.OutlierDetection != nil || len(l.Failover)+len(l.FailoverPriority) == 0 {
		return
	}
	p.add(field+".loadBalancer.localityLbSetting", ReasonFailoverWithoutOutlierDetection,
		"failover needs outlierDetection in the same traffic policy; without it no endpoint is ever ejected and failover never happens")
}

func connectionPool(cp *networkingapi.ConnectionPoolSettings, field string, p *problems) *ConnectionPool {
	if cp == nil {
		return nil
	}
	tcp, http := cp.GetTcp(), cp.GetHttp()
	out := &ConnectionPool{
		MaxConnections:           nonNegative(tcp.GetMaxConnections(), field+".tcp.maxConnections", p),
		ConnectTimeout:           optionalMillis(tcp.GetConnectTimeout(), field+".tcp.connectTimeout", p),
		HTTP1MaxPendingRequests:  nonNegative(http.GetHttp1MaxPendingRequests(), field+".http.http1MaxPendingRequests", p),
		HTTP2MaxRequests:         nonNegative(http.GetHttp2MaxRequests(), field+".http.http2MaxRequests", p),
		MaxRequestsPerConnection: nonNegative(http.GetMaxRequestsPerConnection(), field+".http.maxRequestsPerConnection", p),
		MaxRetries:               nonNegative(http.GetMaxRetries(), field+".http.maxRetries", p),
	}
	if k := tcp.GetTcpKeepalive(); k != nil {
		out.TCPKeepalive = &TCPKeepalive{Probes: k.GetProbes(),
			Time:     optionalMillis(k.GetTime(), field+".tcp.tcpKeepalive.time", p),
			Interval: optionalMillis(k.GetInterval(), field+".tcp.tcpKeepalive.interval", p)}
		for _, d := range []time.Duration{out.TCPKeepalive.Time, out.TCPKeepalive.Interval} {
			if d%time.Second != 0 {
				p.add(field+".tcp.tcpKeepalive", "InvalidDuration", "keepalive time and interval are whole seconds, got %v", d)
			}
		}
	}
	if d := http.GetIdleTimeout(); d != nil {
		v := millisDuration(d, field+".http.idleTimeout", 0, p)
		out.IdleTimeout = &v
	}
	return out
}

func outlierDetection(od *networkingapi.OutlierDetection, field string, p *problems) *OutlierDetection {
	if od == nil {
		return nil
	}
	out := &OutlierDetection{
		Consecutive5xxErrors:           uint32Value(od.GetConsecutive_5XxErrors()),
		ConsecutiveGatewayErrors:       uint32Value(od.GetConsecutiveGatewayErrors()),
		ConsecutiveLocalOriginFailures: uint32Value(od.GetConsecutiveLocalOriginFailures()),
		SplitExternalLocalOriginErrors: od.GetSplitExternalLocalOriginErrors(),
		FailurePercentageThreshold:     uint32Value(od.GetFailurePercentageThreshold()),
		Interval:                       optionalMillis(od.GetInterval(), field+".interval", p),
		BaseEjectionTime:               optionalMillis(od.GetBaseEjectionTime(), field+".baseEjectionTime", p),
		MaxEjectionPercent:             intPercent(od.GetMaxEjectionPercent(), field+".maxEjectionPercent", p),
		MinHealthPercent:               intPercent(od.GetMinHealthPercent(), field+".minHealthPercent", p),
	}
	if n := od.GetConsecutiveErrors(); n != 0 && out.Consecutive5xxErrors == nil && out.ConsecutiveGatewayErrors == nil {
		// Deprecated: counts 502, 503 and 504 only, and turns off the
		// consecutive 5xx ejection Envoy would otherwise do, as in Istio.
		v, off := nonNegative(n, field+".consecutiveErrors", p), uint32(0)
		out.ConsecutiveGatewayErrors, out.Consecutive5xxErrors = &v, &off
	}
	if v := out.FailurePercentageThreshold; v != nil && *v > 100 {
		p.add(field+".failurePercentageThreshold", "OutOfRange", "%d is not a percentage in 0-100", *v)
	}
	if out.ConsecutiveLocalOriginFailures != nil && !out.SplitExternalLocalOriginErrors {
		p.add(field+".consecutiveLocalOriginFailures", "InvalidOutlierDetection", "needs splitExternalLocalOriginErrors: true")
	}
	return out
}

func clientTLS(t *networkingapi.ClientTLSSettings, field string, p *problems) *ClientTLS {
	if t == nil {
		return nil
	}
	out := &ClientTLS{
		Mode:                 clientTLSMode(t.GetMode(), field+".mode", p),
		ClientCertificate:    t.GetClientCertificate(),
		PrivateKey:           t.GetPrivateKey(),
		CACertificates:       t.GetCaCertificates(),
		CredentialName:       t.GetCredentialName(),
		CACertCredentialName: t.GetCaCertCredentialName(),
		SubjectAltNames:      slices.Clone(t.GetSubjectAltNames()),
		SNI:                  t.GetSni(),
		InsecureSkipVerify:   t.GetInsecureSkipVerify().GetValue(),
	}
	files := out.ClientCertificate != "" || out.PrivateKey != "" || out.CACertificates != ""
	switch out.Mode {
	case ClientTLSIstioMutual:
		if files || out.CredentialName != "" || out.CACertCredentialName != "" {
			p.add(field, "InvalidTLS", "ISTIO_MUTUAL uses the workload certificate; clientCertificate, privateKey, caCertificates and credentialName must be empty")
		}
	case ClientTLSMutual:
		if out.CredentialName == "" && (out.ClientCertificate == "" || out.PrivateKey == "") {
			p.add(field, "MissingClientCertificate", "MUTUAL needs credentialName, or clientCertificate and privateKey")
		}
	}
	if out.CredentialName != "" && files {
		p.add(field+".credentialName", "InvalidTLS", "credentialName and certificate files cannot both be set")
	}
	if (out.ClientCertificate == "") != (out.PrivateKey == "") {
		p.add(field, "InvalidTLS", "clientCertificate and privateKey go together")
	}
	return out
}

func clientTLSMode(m networkingapi.ClientTLSSettings_TLSmode, field string, p *problems) ClientTLSMode {
	switch m {
	case networkingapi.ClientTLSSettings_DISABLE:
		return ClientTLSDisable
	case networkingapi.ClientTLSSettings_SIMPLE:
		return ClientTLSSimple
	case networkingapi.ClientTLSSettings_MUTUAL:
		return ClientTLSMutual
	case networkingapi.ClientTLSSettings_ISTIO_MUTUAL:
		return ClientTLSIstioMutual
	}
	p.add(field, "UnknownTLSMode", "TLS mode %v is not one of DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL", m)
	return ClientTLSDisable
}

// unsupportedRuleFields warns (without refusing the rule) about the
// DestinationRule fields read but not applied yet.
func unsupportedRuleFields(dr *networkingapi.DestinationRule, p *problems) {
	if dr.GetWorkloadSelector() != nil {
		p.add("spec.workloadSelector", ReasonUnsupportedField, "workloadSelector is not supported yet; the rule applies to every proxy that sees it")
	}
}

// unsupportedPolicyFields warns about the trafficPolicy fields at field
// that are read but not applied yet.
func unsupportedPolicyFields(tp *networkingapi.TrafficPolicy, field string, p *problems) {
	warn := func(set bool, name string) {
		if set {
			p.add(field+"."+name, ReasonUnsupportedField, "%s is not supported yet; ignored", name)
		}
	}
	lb, tcp, http, od := tp.GetLoadBalancer(), tp.GetConnectionPool().GetTcp(), tp.GetConnectionPool().GetHttp(), tp.GetOutlierDetection()
	warn(lb.GetWarmupDurationSecs() != nil || lb.GetWarmup() != nil, "loadBalancer.warmup")
	warn(lb.GetZoneAwareLbSetting() != nil, "loadBalancer.zoneAwareLbSetting")
	warn(lb.GetBackendUtilization() != nil, "loadBalancer.backendUtilization")
	warn(len(lb.GetConsistentHash().GetHttpCookie().GetAttributes()) > 0, "loadBalancer.consistentHash.httpCookie.attributes")
	warn(tcp.GetMaxConnectionDuration() != nil, "connectionPool.tcp.maxConnectionDuration")
	warn(tcp.GetIdleTimeout() != nil, "connectionPool.tcp.idleTimeout")
	warn(http.GetH2UpgradePolicy() != 0, "connectionPool.http.h2UpgradePolicy")
	warn(http.GetUseClientProtocol(), "connectionPool.http.useClientProtocol")
	warn(http.GetMaxConcurrentStreams() != 0, "connectionPool.http.maxConcurrentStreams")
	warn(http.GetHttp2KeepAlive() != nil, "connectionPool.http.http2KeepAlive")
	warn(len(od.GetOutlierDetectionHttpErrorCodes()) > 0, "outlierDetection.outlierDetectionHttpErrorCodes")
	warn(tp.GetTls().GetCaCrl() != "", "tls.caCrl")
	warn(tp.GetTunnel() != nil, "tunnel")
	warn(tp.GetProxyProtocol() != nil, "proxyProtocol")
	warn(tp.GetRetryBudget() != nil, "retryBudget")
}
