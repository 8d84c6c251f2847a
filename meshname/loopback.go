package meshname

import (
	"hash/fnv"
	"net/netip"
	"strings"
)

// Loopback addresses of mesh services on a VM without traffic capture: the
// node agent's DNS answers a service's host name with its address, and the
// VM's Envoy has the service's outbound listeners bound on it. Both sides
// derive it from the host name alone, so they agree without a name table.
// Linux routes all of 127.0.0.0/8 to the loopback interface, so binding
// such an address needs no privilege and no interface setup.
const (
	// LoopbackPrefix holds every service loopback address. It leaves out
	// the low half of 127.0.0.0/8, where 127.0.0.1, systemd-resolved's
	// 127.0.0.53 and Debian's 127.0.1.1 live.
	LoopbackPrefix = "127.128.0.0/9"
	loopbackBase   = 127<<24 | 128<<16
	// loopbackSize is the number of addresses used: the prefix less its
	// last address, 127.255.255.255, the broadcast address of 127.0.0.0/8.
	loopbackSize = 1<<23 - 1
)

// LoopbackAddress is the address in LoopbackPrefix for a service host name
// (case and a trailing dot do not matter): FNV-1a of the name, modulo the
// prefix size. Two names may share an address; on an HTTP port that is
// harmless (the listener routes by Host), on a TCP port only one of them
// gets the listener (the control plane reports the other).
func LoopbackAddress(host string) netip.Addr {
	h := fnv.New32a()
	h.Write([]byte(CanonicalHost(host)))
	v := loopbackBase + h.Sum32()%loopbackSize
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// CanonicalHost is a DNS name as the registry keys services: lower case,
// without the trailing dot of a fully qualified query name.
func CanonicalHost(name string) string {
	return strings.ToLower(strings.TrimRight(name, "."))
}
