package registry

import (
	"fmt"
	"maps"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networkingapi "istio.io/api/networking/v1alpha3"
)

// Limits Envoy puts on consistent hashing.
const (
	maxRingSize       = 8 * 1024 * 1024
	maxMaglevTableLen = 5000011
)

// destinationRule converts a DestinationRule. A short host name is
// qualified with the rule's namespace, as Istio does. Every bad field is a
// problem, and a problem rejects the rule (its last good version stays).
func (c *converter) destinationRule(key ObjectKey, dr *networkingapi.DestinationRule, p *problems) *record {
	host := strings.ToLower(strings.TrimSpace(dr.GetHost()))
	if host == "" {
		p.add("spec.host", "MissingHost", "host is required")
		return nil
	}
	if !strings.Contains(host, ".") && host != "*" {
		host = c.kubeHostname(key.Namespace, host)
	}
	unsupportedRuleFields(dr, p)
	out := &DestinationRule{
		Namespace:     key.Namespace,
		Name:          key.Name,
		Host:          host,
		TrafficPolicy: trafficPolicy(dr.GetTrafficPolicy(), "spec.trafficPolicy", p),
		Subsets:       subsets(dr.GetSubsets(), p),
		ExportTo:      parseExportTo("spec.exportTo", dr.GetExportTo(), key.Namespace, p),
	}
	return &record{Policies: []*policyRow{{Namespace: key.Namespace, DestRule: out}}}
}

func subsets(in []*networkingapi.Subset, p *problems) []Subset {
	var out []Subset
	names := map[string]int{}
	for i, s := range in {
		field := fmt.Sprintf("spec.subsets[%d].name", i)
		if s.GetName() == "" {
			p.add(field, "MissingSubsetName", "subset name is required")
			continue
		}
		if j, dup := names[s.GetName()]; dup {
			p.add(field, "DuplicateSubset", "subset %q is already defined by spec.subsets[%d]", s.GetName(), j)
			continue
		}
		if strings.ContainsAny(s.GetName(), "|_") || strings.Contains(s.GetName(), "..") {
			p.add(field, "InvalidSubsetName", "subset name %q may not contain '|', '_' or '..' (it is part of cluster names and SNI)", s.GetName())
			continue
		}
		names[s.GetName()] = i
		out = append(out, Subset{Name: s.GetName(), Labels: maps.Clone(s.GetLabels()),
			TrafficPolicy: trafficPolicy(s.GetTrafficPolicy(), fmt.Sprintf("spec.subsets[%d].trafficPolicy", i), p)})
	}
	return out
}

// trafficPolicy converts a trafficPolicy at field (nil stays nil).
func trafficPolicy(tp *networkingapi.TrafficPolicy, field string, p *problems) *TrafficPolicy {
	if tp == nil {
		return nil
	}
	unsupportedPolicyFields(tp, field, p)
	out := &TrafficPolicy{
		LoadBalancer:     loadBalancer(tp.GetLoadBalancer(), field+".loadBalancer", p),
		ConnectionPool:   connectionPool(tp.GetConnectionPool(), field+".connectionPool", p),
		OutlierDetection: outlierDetection(tp.GetOutlierDetection(), field+".outlierDetection", p),
		TLS:              clientTLS(tp.GetTls(), field+".tls", p),
	}
	warnFailoverWithoutOutlier(out, field, p)
	for i, pl := range tp.GetPortLevelSettings() {
		f := fmt.Sprintf("%s.portLevelSettings[%d]", field, i)
		n := pl.GetPort().GetNumber()
		if n == 0 || n > 65535 {
			p.add(f+".port.number", "InvalidPort", "port %d is not in 1-65535", n)
			continue
		}
		if _, dup := out.PortLevel[n]; dup {
			p.add(f+".port.number", "DuplicatePort", "port %d already has settings", n)
			continue
		}
		if out.PortLevel == nil {
			out.PortLevel = map[uint32]*TrafficPolicy{}
		}
		out.PortLevel[n] = &TrafficPolicy{
			LoadBalancer:     loadBalancer(pl.GetLoadBalancer(), f+".loadBalancer", p),
			ConnectionPool:   connectionPool(pl.GetConnectionPool(), f+".connectionPool", p),
			OutlierDetection: outlierDetection(pl.GetOutlierDetection(), f+".outlierDetection", p),
			TLS:              clientTLS(pl.GetTls(), f+".tls", p),
		}
		warnFailoverWithoutOutlier(out.PortLevel[n], f, p)
	}
	return out
}

func loadBalancer(lb *networkingapi.LoadBalancerSettings, field string, p *problems) *LoadBalancer {
	if lb == nil {
		return nil
	}
	out := &LoadBalancer{Locality: localityLB(lb.GetLocalityLbSetting(), field+".localityLbSetting", p)}
	switch {
	case lb.GetConsistentHash() != nil:
		out.ConsistentHash = consistentHash(lb.GetConsistentHash(), field+".consistentHash", p)
	case lb.GetLbPolicy() != nil:
		out.Simple = simpleLB(lb.GetSimple(), field+".simple", p)
	}
	return out
}

func simpleLB(s networkingapi.LoadBalancerSettings_SimpleLB, field string, p *problems) SimpleLB {
	switch s {
	case networkingapi.LoadBalancerSettings_UNSPECIFIED:
		return LBUnset
	case networkingapi.LoadBalancerSettings_ROUND_ROBIN:
		return LBRoundRobin
	case networkingapi.LoadBalancerSettings_LEAST_CONN, networkingapi.LoadBalancerSettings_LEAST_REQUEST:
		return LBLeastRequest
	case networkingapi.LoadBalancerSettings_RANDOM:
		return LBRandom
	case networkingapi.LoadBalancerSettings_PASSTHROUGH:
		return LBPassthrough
	}
	p.add(field, "UnknownLoadBalancer", "load balancer %v is not one of ROUND_ROBIN, LEAST_REQUEST, LEAST_CONN, RANDOM, PASSTHROUGH", s)
	return LBUnset
}

func consistentHash(ch *networkingapi.LoadBalancerSettings_ConsistentHashLB, field string, p *problems) *ConsistentHash {
	out := &ConsistentHash{
		HeaderName:      ch.GetHttpHeaderName(),
		UseSourceIP:     ch.GetUseSourceIp(),
		QueryParameter:  ch.GetHttpQueryParameterName(),
		MinimumRingSize: ch.GetMinimumRingSize(),
	}
	switch {
	case ch.GetHashKey() == nil:
		p.add(field, "MissingHashKey", "one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName is required")
	case ch.GetHttpCookie() != nil:
		out.Cookie = hashCookie(ch.GetHttpCookie(), field+".httpCookie", p)
	case ch.GetHttpHeaderName() == "" && ch.GetHttpQueryParameterName() == "" && !ch.GetUseSourceIp():
		p.add(field, "MissingHashKey", "the hash key is empty")
	}
	if r := ch.GetRingHash(); r != nil {
		out.MinimumRingSize = r.GetMinimumRingSize()
	}
	if out.MinimumRingSize > maxRingSize {
		p.add(field+".ringHash.minimumRingSize", "OutOfRange", "minimumRingSize %d is over %d", out.MinimumRingSize, maxRingSize)
	}
	if m := ch.GetMaglev(); m != nil {
		out.Maglev, out.MaglevTableSize = true, m.GetTableSize()
		if n := m.GetTableSize(); n != 0 && (n > maxMaglevTableLen || !prime(n)) {
			p.add(field+".maglev.tableSize", "OutOfRange", "tableSize %d must be a prime number up to %d", n, maxMaglevTableLen)
		}
	}
	return out
}

func hashCookie(c *networkingapi.LoadBalancerSettings_ConsistentHashLB_HTTPCookie, field string, p *problems) *HashCookie {
	if c.GetName() == "" {
		p.add(field+".name", "MissingCookieName", "cookie name is required")
	}
	out := &HashCookie{Name: c.GetName(), Path: c.GetPath()}
	if c.GetTtl() != nil {
		out.TTL = millisDuration(c.GetTtl(), field+".ttl", 0, p)
	}
	return out
}

func prime(n uint64) bool {
	if n < 2 {
		return false
	}
	for d := uint64(2); d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

// duration checks a duration field: valid, at least least, whole milliseconds
// (Envoy's and Istio's precision).
func millisDuration(d *durationpb.Duration, field string, least time.Duration, p *problems) time.Duration {
	if err := d.CheckValid(); err != nil {
		p.add(field, "InvalidDuration", "%v", err)
		return 0
	}
	v := d.AsDuration()
	switch {
	case v < least:
		p.add(field, "InvalidDuration", "duration %v is less than %v", v, least)
	case v%time.Millisecond != 0:
		p.add(field, "InvalidDuration", "duration %v is not a whole number of milliseconds", v)
	}
	return v
}

// optionalDuration is duration for a field that may be absent (0).
func optionalMillis(d *durationpb.Duration, field string, p *problems) time.Duration {
	if d == nil {
		return 0
	}
	return millisDuration(d, field, time.Millisecond, p)
}

// count checks a non-negative int32 count.
func nonNegative(v int32, field string, p *problems) uint32 {
	if v < 0 {
		p.add(field, "OutOfRange", "%d is negative", v)
		return 0
	}
	return uint32(v)
}

// percent checks a 0-100 percentage.
func intPercent(v int32, field string, p *problems) uint32 {
	if v < 0 || v > 100 {
		p.add(field, "OutOfRange", "%d is not a percentage in 0-100", v)
		return 0
	}
	return uint32(v)
}

func uint32Value(w *wrapperspb.UInt32Value) *uint32 {
	if w == nil {
		return nil
	}
	v := w.GetValue()
	return &v
}
