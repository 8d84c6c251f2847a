package registry_test

import (
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networkingapi "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"

	"github.com/librarymesh/controlplane/registry"
)

func TestDestinationRuleTrafficPolicy(t *testing.T) {
	s := registry.NewStore(nil)
	dr := &networkingv1.DestinationRule{ObjectMeta: meta("dr")}
	dr.Spec = networkingapi.DestinationRule{
		Host: "inventory",
		TrafficPolicy: &networkingapi.TrafficPolicy{
			LoadBalancer: &networkingapi.LoadBalancerSettings{LbPolicy: &networkingapi.LoadBalancerSettings_ConsistentHash{
				ConsistentHash: &networkingapi.LoadBalancerSettings_ConsistentHashLB{
					HashKey:       &networkingapi.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName{HttpHeaderName: "x-user"},
					HashAlgorithm: &networkingapi.LoadBalancerSettings_ConsistentHashLB_RingHash_{RingHash: &networkingapi.LoadBalancerSettings_ConsistentHashLB_RingHash{MinimumRingSize: 64}},
				}}},
			ConnectionPool: &networkingapi.ConnectionPoolSettings{
				Tcp:  &networkingapi.ConnectionPoolSettings_TCPSettings{MaxConnections: 7, ConnectTimeout: durationpb.New(2 * time.Second)},
				Http: &networkingapi.ConnectionPoolSettings_HTTPSettings{Http2MaxRequests: 9, IdleTimeout: durationpb.New(0)},
			},
			OutlierDetection: &networkingapi.OutlierDetection{Consecutive_5XxErrors: wrapperspb.UInt32(3), Interval: durationpb.New(time.Second), MaxEjectionPercent: 40},
			Tls:              &networkingapi.ClientTLSSettings{Mode: networkingapi.ClientTLSSettings_MUTUAL, ClientCertificate: "/c", PrivateKey: "/k", Sni: "x"},
			PortLevelSettings: []*networkingapi.TrafficPolicy_PortTrafficPolicy{{
				Port: &networkingapi.PortSelector{Number: 9090}, LoadBalancer: &networkingapi.LoadBalancerSettings{LbPolicy: &networkingapi.LoadBalancerSettings_Simple{Simple: networkingapi.LoadBalancerSettings_LEAST_CONN}},
			}},
		},
		Subsets: []*networkingapi.Subset{{Name: "v1", Labels: map[string]string{"version": "v1"},
			TrafficPolicy: &networkingapi.TrafficPolicy{Tls: &networkingapi.ClientTLSSettings{Mode: networkingapi.ClientTLSSettings_DISABLE}}}},
	}
	if ps := s.Upsert("kube", dr); len(ps) != 0 {
		t.Fatalf("problems: %v", ps)
	}
	three, zero := uint32(3), time.Duration(0)
	want := &registry.DestinationRule{Namespace: "default", Name: "dr", Host: "inventory.default.svc.cluster.local",
		TrafficPolicy: &registry.TrafficPolicy{
			LoadBalancer:     &registry.LoadBalancer{ConsistentHash: &registry.ConsistentHash{HeaderName: "x-user", MinimumRingSize: 64}},
			ConnectionPool:   &registry.ConnectionPool{MaxConnections: 7, ConnectTimeout: 2 * time.Second, HTTP2MaxRequests: 9, IdleTimeout: &zero},
			OutlierDetection: &registry.OutlierDetection{Consecutive5xxErrors: &three, Interval: time.Second, MaxEjectionPercent: 40},
			TLS:              &registry.ClientTLS{Mode: registry.ClientTLSMutual, ClientCertificate: "/c", PrivateKey: "/k", SNI: "x"},
			PortLevel:        map[uint32]*registry.TrafficPolicy{9090: {LoadBalancer: &registry.LoadBalancer{Simple: registry.LBLeastRequest}}},
		},
		Subsets: []registry.Subset{{Name: "v1", Labels: map[string]string{"version": "v1"},
			TrafficPolicy: &registry.TrafficPolicy{TLS: &registry.ClientTLS{Mode: registry.ClientTLSDisable}}}},
	}
	if got := s.View().DestinationRules(); len(got) != 1 || !reflect.DeepEqual(got[0], want) {
		t.Errorf("destination rule = %+v, want %+v", got[0], want)
	}
}

func TestDestinationRuleBadTrafficPolicy(t *testing.T) {
	tp := func(f func(tp *networkingapi.TrafficPolicy)) *networkingapi.TrafficPolicy {
		out := &networkingapi.TrafficPolicy{}
		f(out)
		return out
	}
	locality := func(l *networkingapi.LocalityLoadBalancerSetting) *networkingapi.TrafficPolicy {
		return &networkingapi.TrafficPolicy{LoadBalancer: &networkingapi.LoadBalancerSettings{LocalityLbSetting: l},
			OutlierDetection: &networkingapi.OutlierDetection{Consecutive_5XxErrors: wrapperspb.UInt32(1)}}
	}
	tests := []struct {
		name, field, reason string
		policy              *networkingapi.TrafficPolicy
	}{
		{"MUTUAL without a client certificate", "spec.trafficPolicy.tls", "MissingClientCertificate", tp(func(tp *networkingapi.TrafficPolicy) {
			tp.Tls = &networkingapi.ClientTLSSettings{Mode: networkingapi.ClientTLSSettings_MUTUAL, CaCertificates: "/ca"}
		})},
		{"unknown load balancer", "spec.trafficPolicy.loadBalancer.simple", "UnknownLoadBalancer", tp(func(tp *networkingapi.TrafficPolicy) {
			tp.LoadBalancer = &networkingapi.LoadBalancerSettings{LbPolicy: &networkingapi.LoadBalancerSettings_Simple{Simple: 42}}
		})},
		{"sub-millisecond timeout", "spec.trafficPolicy.connectionPool.tcp.connectTimeout", "InvalidDuration", tp(func(tp *networkingapi.TrafficPolicy) {
			tp.ConnectionPool = &networkingapi.ConnectionPoolSettings{Tcp: &networkingapi.ConnectionPoolSettings_TCPSettings{ConnectTimeout: durationpb.New(time.Microsecond)}}
		})},
		{"negative pending requests", "spec.trafficPolicy.connectionPool.http.http1MaxPendingRequests", "OutOfRange", tp(func(tp *networkingapi.TrafficPolicy) {
			tp.ConnectionPool = &networkingapi.ConnectionPoolSettings{Http: &networkingapi.ConnectionPoolSettings_HTTPSettings{Http1MaxPendingRequests: -1}}
		})},
		{"ejection over 100%", "spec.trafficPolicy.outlierDetection.maxEjectionPercent", "OutOfRange", tp(func(tp *networkingapi.TrafficPolicy) {
			tp.OutlierDetection = &networkingapi.OutlierDetection{MaxEjectionPercent: 101}
		})},
		{"port level port 0", "spec.trafficPolicy.portLevelSettings[0].port.number", "InvalidPort", tp(func(tp *networkingapi.TrafficPolicy) {
			tp.PortLevelSettings = []*networkingapi.TrafficPolicy_PortTrafficPolicy{{Port: &networkingapi.PortSelector{}}}
		})},
		{"consistent hash without a key", "spec.trafficPolicy.loadBalancer.consistentHash", "MissingHashKey", tp(func(tp *networkingapi.TrafficPolicy) {
			tp.LoadBalancer = &networkingapi.LoadBalancerSettings{LbPolicy: &networkingapi.LoadBalancerSettings_ConsistentHash{ConsistentHash: &networkingapi.LoadBalancerSettings_ConsistentHashLB{}}}
		})},
		{"distribute weights adding up to 90", "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to", "OutOfRange", locality(&networkingapi.LocalityLoadBalancerSetting{
			Distribute: []*networkingapi.LocalityLoadBalancerSetting_Distribute{{From: "r1/*", To: map[string]uint32{"r1/z1/*": 80, "r2/*": 10}}}})},
		{"distribute weight over 100", "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to", "OutOfRange", locality(&networkingapi.LocalityLoadBalancerSetting{
			Distribute: []*networkingapi.LocalityLoadBalancerSetting_Distribute{{From: "r1", To: map[string]uint32{"r1": 101}}}})},
		{"distribute and failover", "spec.trafficPolicy.loadBalancer.localityLbSetting", "ConflictingLocalitySettings", locality(&networkingapi.LocalityLoadBalancerSetting{
			Distribute: []*networkingapi.LocalityLoadBalancerSetting_Distribute{{From: "r1", To: map[string]uint32{"r1": 100}}},
			Failover:   []*networkingapi.LocalityLoadBalancerSetting_Failover{{From: "r1", To: "r2"}}})},
		{"failover from == to", "spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0]", "InvalidFailover", locality(&networkingapi.LocalityLoadBalancerSetting{
			Failover: []*networkingapi.LocalityLoadBalancerSetting_Failover{{From: "r1", To: "r1"}}})},
		{"failover to a zone", "spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0]", "InvalidFailover", locality(&networkingapi.LocalityLoadBalancerSetting{
			Failover: []*networkingapi.LocalityLoadBalancerSetting_Failover{{From: "r1", To: "r2/z1"}}})},
		{"wildcard inside a locality", "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].from", "InvalidLocality", locality(&networkingapi.LocalityLoadBalancerSetting{
			Distribute: []*networkingapi.LocalityLoadBalancerSetting_Distribute{{From: "r1/*/s1", To: map[string]uint32{"r1": 100}}}})},
		{"empty zone", "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to", "InvalidLocality", locality(&networkingapi.LocalityLoadBalancerSetting{
			Distribute: []*networkingapi.LocalityLoadBalancerSetting_Distribute{{From: "r1", To: map[string]uint32{"r1//s1": 100}}}})},
		{"failoverPriority not a label", "spec.trafficPolicy.loadBalancer.localityLbSetting.failoverPriority[1]", "InvalidLabel", locality(&networkingapi.LocalityLoadBalancerSetting{
			FailoverPriority: []string{"topology.istio.io/network", "not a label"}})},
		{"failover with a region failoverPriority", "spec.trafficPolicy.loadBalancer.localityLbSetting.failoverPriority[0]", "ConflictingLocalitySettings", locality(&networkingapi.LocalityLoadBalancerSetting{
			FailoverPriority: []string{"topology.kubernetes.io/region"},
			Failover:         []*networkingapi.LocalityLoadBalancerSetting_Failover{{From: "r1", To: "r2"}}})},
		{"port level distribute over 100", "spec.trafficPolicy.portLevelSettings[0].loadBalancer.localityLbSetting.distribute[0].to", "OutOfRange", tp(func(tp *networkingapi.TrafficPolicy) {
			tp.PortLevelSettings = []*networkingapi.TrafficPolicy_PortTrafficPolicy{{Port: &networkingapi.PortSelector{Number: 80},
				LoadBalancer: &networkingapi.LoadBalancerSettings{LocalityLbSetting: &networkingapi.LocalityLoadBalancerSetting{
					Distribute: []*networkingapi.LocalityLoadBalancerSetting_Distribute{{From: "r1", To: map[string]uint32{"r1": 60, "r2": 60}}}}}}}
		})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := registry.NewStore(nil)
			dr := &networkingv1.DestinationRule{ObjectMeta: meta("dr")}
			dr.Spec.Host = "a.b"
			dr.Spec.TrafficPolicy = tc.policy
			ps := s.Upsert("kube", dr)
			if !hasProblem(ps, tc.field, tc.reason) || len(s.View().DestinationRules()) != 0 {
				t.Errorf("problems = %v, want %s at %s and the rule refused", ps, tc.reason, tc.field)
			}
		})
	}
}

// TestDestinationRuleSubsetMatchesNothing: a subset no endpoint of its host
// carries is a problem found against the model, and it goes away when an
// endpoint with its labels arrives.
func TestDestinationRuleSubsetMatchesNothing(t *testing.T) {
	s := registry.NewStore(nil)
	se := func(version string) *networkingv1.ServiceEntry {
		e := &networkingv1.ServiceEntry{ObjectMeta: meta("db")}
		e.Spec = networkingapi.ServiceEntry{Hosts: []string{"db.example.com"}, Resolution: networkingapi.ServiceEntry_STATIC,
			Ports:     []*networkingapi.ServicePort{{Number: 5432, Name: "tcp", Protocol: "TCP"}},
			Endpoints: []*networkingapi.WorkloadEntry{{Address: "10.0.0.1", Labels: map[string]string{"version": version}}}}
		return e
	}
	s.Upsert("kube", se("v1"))
	dr := &networkingv1.DestinationRule{ObjectMeta: meta("db")}
	dr.Spec = networkingapi.DestinationRule{Host: "db.example.com", Subsets: []*networkingapi.Subset{
		{Name: "v1", Labels: map[string]string{"version": "v1"}}, {Name: "v2", Labels: map[string]string{"version": "v2"}}}}
	if ps := s.Upsert("kube", dr); len(ps) != 0 {
		t.Fatalf("problems of the rule itself: %v", ps)
	}
	if ps := s.Problems(); !hasProblem(ps, "spec.subsets[1].labels", registry.ReasonSubsetMatchesNothing) || hasProblem(ps, "spec.subsets[0].labels", registry.ReasonSubsetMatchesNothing) {
		t.Errorf("problems = %v, want subset v2 (and only it) reported", ps)
	}
	s.Upsert("kube", se("v2"))
	if ps := s.Problems(); !hasProblem(ps, "spec.subsets[0].labels", registry.ReasonSubsetMatchesNothing) || hasProblem(ps, "spec.subsets[1].labels", registry.ReasonSubsetMatchesNothing) {
		t.Errorf("after the endpoint became v2: problems = %v, want subset v1 (and only it) reported", ps)
	}
}

// TestDestinationRuleUnsupportedFields: fields read but not applied are
// warnings naming the field, and so is failover without outlier detection
// (it never takes effect); the rule stays in force.
func TestDestinationRuleUnsupportedFields(t *testing.T) {
	s := registry.NewStore(nil)
	dr := &networkingv1.DestinationRule{ObjectMeta: meta("dr")}
	dr.Spec = networkingapi.DestinationRule{Host: "a.b", TrafficPolicy: &networkingapi.TrafficPolicy{
		Tunnel: &networkingapi.TrafficPolicy_TunnelSettings{Protocol: "CONNECT", TargetHost: "x", TargetPort: 1},
		LoadBalancer: &networkingapi.LoadBalancerSettings{LocalityLbSetting: &networkingapi.LocalityLoadBalancerSetting{
			Failover: []*networkingapi.LocalityLoadBalancerSetting_Failover{{From: "us-east1", To: "us-west1"}}}},
	}}
	ps := s.Upsert("kube", dr)
	if !hasProblem(ps, "spec.trafficPolicy.tunnel", registry.ReasonUnsupportedField) ||
		!hasProblem(ps, "spec.trafficPolicy.loadBalancer.localityLbSetting", registry.ReasonFailoverWithoutOutlierDetection) ||
		hasProblem(ps, "spec.trafficPolicy.loadBalancer.localityLbSetting", registry.ReasonUnsupportedField) {
		t.Errorf("problems = %v, want an UnsupportedField warning for tunnel and FailoverWithoutOutlierDetection for localityLbSetting", ps)
	}
	if len(s.View().DestinationRules()) != 1 {
		t.Errorf("the rule was refused over warnings")
	}
}

// TestDestinationRuleLocality: a localityLbSetting (rule and port level) is
// read into the model, without problems.
func TestDestinationRuleLocality(t *testing.T) {
	s := registry.NewStore(nil)
	dr := &networkingv1.DestinationRule{ObjectMeta: meta("dr")}
	od := &networkingapi.OutlierDetection{Consecutive_5XxErrors: wrapperspb.UInt32(1)}
	dr.Spec = networkingapi.DestinationRule{Host: "a.b", TrafficPolicy: &networkingapi.TrafficPolicy{
		OutlierDetection: od,
		LoadBalancer: &networkingapi.LoadBalancerSettings{LocalityLbSetting: &networkingapi.LocalityLoadBalancerSetting{
			Enabled:          wrapperspb.Bool(true),
			Failover:         []*networkingapi.LocalityLoadBalancerSetting_Failover{{From: "r1", To: "r2"}},
			FailoverPriority: []string{"topology.istio.io/network", "version=v1"}}},
		PortLevelSettings: []*networkingapi.TrafficPolicy_PortTrafficPolicy{{Port: &networkingapi.PortSelector{Number: 80},
			LoadBalancer: &networkingapi.LoadBalancerSettings{LocalityLbSetting: &networkingapi.LocalityLoadBalancerSetting{
				Distribute: []*networkingapi.LocalityLoadBalancerSetting_Distribute{{From: "r1/z1/*", To: map[string]uint32{"r1/z1/*": 80, "r2/*": 20}}}}}}},
	}}
	if ps := s.Upsert("kube", dr); len(ps) != 0 {
		t.Fatalf("problems = %v", ps)
	}
	tp := s.View().DestinationRules()[0].TrafficPolicy
	enabled := true
	want := &registry.LocalityLB{Enabled: &enabled, Failover: []registry.LocalityFailover{{From: "r1", To: "r2"}},
		FailoverPriority: []string{"topology.istio.io/network", "version=v1"}}
	if got := tp.LoadBalancer.Locality; !reflect.DeepEqual(got, want) {
		t.Errorf("locality = %+v, want %+v", got, want)
	}
	wantPort := &registry.LocalityLB{Distribute: []registry.LocalityDistribute{{From: "r1/z1/*", To: map[string]uint32{"r1/z1/*": 80, "r2/*": 20}}}}
	if got := tp.PortLevel[80].LoadBalancer.Locality; !reflect.DeepEqual(got, wantPort) {
		t.Errorf("port 80 locality = %+v, want %+v", got, wantPort)
	}
}

// TestDestinationRuleExportTo: "." is the rule's namespace; a value that is
// not ".", "*", "~" or a namespace name refuses the rule.
func TestDestinationRuleExportTo(t *testing.T) {
	s := registry.NewStore(nil)
	dr := &networkingv1.DestinationRule{ObjectMeta: meta("dr")}
	dr.Spec = networkingapi.DestinationRule{Host: "a.b", ExportTo: []string{".", "other"}}
	if ps := s.Upsert("kube", dr); len(ps) != 0 {
		t.Fatalf("problems = %v", ps)
	}
	if got := s.View().DestinationRules()[0].ExportTo; !reflect.DeepEqual(got, []string{"default", "other"}) {
		t.Errorf("exportTo = %v, want [default other]", got)
	}
	bad := &networkingv1.DestinationRule{ObjectMeta: meta("bad")}
	bad.Spec = networkingapi.DestinationRule{Host: "a.b", ExportTo: []string{"Bad_NS"}}
	if ps := s.Upsert("kube", bad); !hasProblem(ps, "spec.exportTo[0]", "InvalidExportTo") {
		t.Errorf("problems = %v, want InvalidExportTo at spec.exportTo[0]", ps)
	}
}

// TestDestinationRuleDeprecatedConsecutiveErrors: the deprecated
// consecutiveErrors counts gateway errors and turns 5xx ejection off.
func TestDestinationRuleDeprecatedConsecutiveErrors(t *testing.T) {
	s := registry.NewStore(nil)
	dr := &networkingv1.DestinationRule{ObjectMeta: meta("dr")}
	dr.Spec = networkingapi.DestinationRule{Host: "a.b", TrafficPolicy: &networkingapi.TrafficPolicy{
		OutlierDetection: &networkingapi.OutlierDetection{ConsecutiveErrors: 7}}}
	if ps := s.Upsert("kube", dr); len(ps) != 0 {
		t.Fatalf("problems = %v", ps)
	}
	od := s.View().DestinationRules()[0].TrafficPolicy.OutlierDetection
	if od.ConsecutiveGatewayErrors == nil || *od.ConsecutiveGatewayErrors != 7 || od.Consecutive5xxErrors == nil || *od.Consecutive5xxErrors != 0 {
		t.Errorf("outlier detection = %+v, want gateway errors 7 and 5xx ejection off", od)
	}
}
