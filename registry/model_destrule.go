package registry

import "time"

// Subset is a named group of a service's endpoints: those carrying all of
// Labels. Its TrafficPolicy (nil for none) overrides the rule's.
type Subset struct {
	Name          string
	Labels        map[string]string
	TrafficPolicy *TrafficPolicy
}

// DestinationRule is client-side policy for a host (which may be a wildcard
// such as "*.local").
type DestinationRule struct {
	Namespace     string
	Name          string
	Host          string
	TrafficPolicy *TrafficPolicy // nil: the rule sets none
	Subsets       []Subset
	ExportTo      []string
}

// TLS returns the rule's own (not port-level) client TLS settings; the
// zero value (mode UNSET) when it sets none.
func (dr *DestinationRule) TLS() ClientTLS {
	if dr == nil || dr.TrafficPolicy == nil || dr.TrafficPolicy.TLS == nil {
		return ClientTLS{}
	}
	return *dr.TrafficPolicy.TLS
}

// TrafficPolicy is a DestinationRule trafficPolicy. A nil part is unset.
type TrafficPolicy struct {
	LoadBalancer     *LoadBalancer
	ConnectionPool   *ConnectionPool
	OutlierDetection *OutlierDetection
	TLS              *ClientTLS
	// PortLevel are the portLevelSettings by port number. A port's entry
	// replaces all four parts above for that port (unset parts are not
	// inherited), as in Istio.
	PortLevel map[uint32]*TrafficPolicy
}

// SimpleLB is a loadBalancer.simple policy.
type SimpleLB int

// Simple load balancers. LEAST_CONN is Istio's older name for LEAST_REQUEST.
const (
	LBUnset SimpleLB = iota
	LBRoundRobin
	LBLeastRequest
	LBRandom
	LBPassthrough
)

func (l SimpleLB) String() string {
	return [...]string{"UNSET", "ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "PASSTHROUGH"}[l]
}

// LoadBalancer is a loadBalancer setting: Simple or ConsistentHash (at
// most one), and locality settings.
type LoadBalancer struct {
	Simple         SimpleLB
	ConsistentHash *ConsistentHash
	Locality       *LocalityLB
}

// ConsistentHash hashes one request property (exactly one of the hash
// keys is set) onto a ring (RingHash) or a Maglev table.
type ConsistentHash struct {
	HeaderName     string
	Cookie         *HashCookie
	UseSourceIP    bool
	QueryParameter string
	// MinimumRingSize is the ring hash minimum (0: Envoy's default).
	MinimumRingSize uint64
	// Maglev selects Maglev; MaglevTableSize 0 is Envoy's default.
	Maglev          bool
	MaglevTableSize uint64
}

// HashCookie hashes on an HTTP cookie, which Envoy sets when TTL is given.
type HashCookie struct {
	Name string
	Path string
	TTL  time.Duration
}

// GetLocality is the locality setting, nil when lb is nil or sets none.
func (lb *LoadBalancer) GetLocality() *LocalityLB {
	if lb == nil {
		return nil
	}
	return lb.Locality
}

// LocalityLB is a localityLbSetting.
type LocalityLB struct {
	Enabled          *bool // nil: unset
	Distribute       []LocalityDistribute
	Failover         []LocalityFailover
	FailoverPriority []string
}

// GetFailoverPriority is the failoverPriority labels (nil for a nil l).
func (l *LocalityLB) GetFailoverPriority() []string {
	if l == nil {
		return nil
	}
	return l.FailoverPriority
}

// LocalityDistribute sends traffic from a locality to others by weight (percent).
type LocalityDistribute struct {
	From string            // region, region/zone or region/zone/subzone; may end in `*`
	To   map[string]uint32 // locality pattern to weight
}

// LocalityFailover names the region to fail over to from a region.
type LocalityFailover struct {
	From string
	To   string
}

// ConnectionPool is a connectionPool setting. Zero numbers and durations
// are unset (the API rejects zero for each of them); IdleTimeout nil is unset.
type ConnectionPool struct {
	MaxConnections           uint32
	ConnectTimeout           time.Duration
	TCPKeepalive             *TCPKeepalive
	HTTP1MaxPendingRequests  uint32
	HTTP2MaxRequests         uint32
	MaxRequestsPerConnection uint32
	MaxRetries               uint32
	IdleTimeout              *time.Duration
}

// TCPKeepalive turns on TCP keepalive; zero fields are the OS default.
type TCPKeepalive struct {
	Probes   uint32
	Time     time.Duration
	Interval time.Duration
}

// OutlierDetection is an outlierDetection setting. nil counts are unset.
type OutlierDetection struct {
	Consecutive5xxErrors           *uint32
	ConsecutiveGatewayErrors       *uint32
	ConsecutiveLocalOriginFailures *uint32
	SplitExternalLocalOriginErrors bool
	FailurePercentageThreshold     *uint32
	Interval                       time.Duration // 0: unset
	BaseEjectionTime               time.Duration // 0: unset
	MaxEjectionPercent             uint32
	MinHealthPercent               uint32
}

// ClientTLS is a trafficPolicy.tls setting.
type ClientTLS struct {
	Mode ClientTLSMode
	// Files on the proxy (SIMPLE, MUTUAL).
	ClientCertificate string
	PrivateKey        string
	CACertificates    string
	// CredentialName names a secret served over SDS instead of the files.
	CredentialName string
	// CACertCredentialName names a secret holding the CA alone (instead of
	// CredentialName's `NAME-cacert`).
	CACertCredentialName string
	SubjectAltNames      []string
	SNI                  string
	InsecureSkipVerify   bool
}
