package meshname

import (
	"fmt"
	"strconv"
	"strings"
)

// Fixed cluster names Istio uses.
const (
	PassthroughCluster        = "PassthroughCluster"
	BlackHoleCluster          = "BlackHoleCluster"
	InboundPassthroughCluster = "InboundPassthroughCluster"
	// XDSCluster is the bootstrap's cluster for the control plane.
	XDSCluster = "xds-grpc"
	// SDSCluster is the bootstrap's cluster for the node agent's local SDS socket.
	SDSCluster = "sds-grpc"
	// StatsCluster is the bootstrap's cluster for Envoy's own admin
	// endpoint, which the stats listener (StatsListener) routes
	// /stats/prometheus to.
	StatsCluster = "prometheus_stats"
	// StatsListener is the bootstrap's listener serving Envoy's Prometheus
	// stats on StatsPort, as Istio's sidecars do.
	StatsListener = "prometheus_stats"
	// StatsPort is where Prometheus scrapes Envoy's stats, and StatsPath the path.
	StatsPort = 15090
	StatsPath = "/stats/prometheus"
)

// Direction is the first part of a service cluster name.
type Direction string

// The two directions of a service cluster.
const (
	Outbound Direction = "outbound"
	Inbound  Direction = "inbound"
)

// Cluster is a parsed service cluster name. For an outbound cluster Subset is
// the subset (often empty); for an inbound one it is the port name.
type Cluster struct {
	Direction Direction
	Port      uint32
	Subset    string
	Host      string
}

// String makes the cluster's name.
func (c Cluster) String() string {
	return string(c.Direction) + "|" + strconv.FormatUint(uint64(c.Port), 10) + "|" + c.Subset + "|" + c.Host
}

// OutboundCluster is `outbound|PORT|SUBSET|HOST`.
func OutboundCluster(port uint32, subset, host string) string {
	return Cluster{Direction: Outbound, Port: port, Subset: subset, Host: host}.String()
}

// InboundCluster is `inbound|PORT|PORTNAME|HOST`, the form VM operators
// read in their access logs.
func InboundCluster(port uint32, portName, host string) string {
	return Cluster{Direction: Inbound, Port: port, Subset: portName, Host: host}.String()
}

// ParseCluster reads an OutboundCluster or InboundCluster name back.
func ParseCluster(name string) (Cluster, error) {
	parts := strings.Split(name, "|")
	if len(parts) != 4 {
		return Cluster{}, fmt.Errorf("cluster name %q has %d parts separated by '|', want 4 (DIRECTION|PORT|SUBSET|HOST)", name, len(parts))
	}
	c := Cluster{Direction: Direction(parts[0]), Subset: parts[2], Host: parts[3]}
	if c.Direction != Outbound && c.Direction != Inbound {
		return Cluster{}, fmt.Errorf("cluster name %q: direction %q is not outbound or inbound", name, parts[0])
	}
	port, err := parsePort(parts[1])
	if err != nil {
		return Cluster{}, fmt.Errorf("cluster name %q: %w", name, err)
	}
	if c.Host == "" {
		return Cluster{}, fmt.Errorf("cluster name %q: host is empty", name)
	}
	c.Port = port
	return c, nil
}

// ClusterHost returns the service host of an `outbound|…|HOST` or
// `inbound|…|HOST` name without allocating, and false for any other name.
// It checks the shape only (direction and four parts), not the port.
func ClusterHost(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, string(Outbound)+"|")
	if !ok {
		if rest, ok = strings.CutPrefix(name, string(Inbound)+"|"); !ok {
			return "", false
		}
	}
	_, rest, ok1 := strings.Cut(rest, "|")
	_, host, ok2 := strings.Cut(rest, "|")
	if !ok1 || !ok2 || host == "" || strings.IndexByte(host, '|') >= 0 {
		return "", false
	}
	return host, true
}

// SNI is the mesh mTLS server name of an outbound cluster:
// `outbound_.PORT_.SUBSET_.HOST`.
func SNI(port uint32, subset, host string) string {
	return "outbound_." + strconv.FormatUint(uint64(port), 10) + "_." + subset + "_." + host
}

// ParseSNI reads an SNI back into the outbound cluster it names.
func ParseSNI(sni string) (Cluster, error) {
	rest, ok := strings.CutPrefix(sni, "outbound_.")
	p, rest, ok1 := strings.Cut(rest, "_.")
	subset, host, ok2 := strings.Cut(rest, "_.")
	if !ok || !ok1 || !ok2 || host == "" {
		return Cluster{}, fmt.Errorf("SNI %q is not of the form outbound_.PORT_.SUBSET_.HOST", sni)
	}
	port, err := parsePort(p)
	if err != nil {
		return Cluster{}, fmt.Errorf("SNI %q: %w", sni, err)
	}
	return Cluster{Direction: Outbound, Port: port, Subset: subset, Host: host}, nil
}

func parsePort(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 || strconv.FormatUint(n, 10) != s {
		return 0, fmt.Errorf("port %q is not a number in 1-65535", s)
	}
	return uint32(n), nil
}
