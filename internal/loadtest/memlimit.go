package loadtest

import (
	"math"

	"golang.org/x/sys/unix"
)

// DefaultClientMemLimitGiB is the load client's soft memory limit when
// -client-mem-limit does not set one: half the machine's memory in whole
// GiB, and at least 4 GiB. At scenario L the client holds more than 4 GiB
// (7.3 GB resident while 2,000 delta proxies of 10,000 clusters each
// connect): under a fixed 4 GiB limit it collected garbage without pause,
// in the change windows too (1.25-1.32 cores), and the L figures measured
// the client more than the server.
func DefaultClientMemLimitGiB() float64 {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return 4
	}
	return max(4, math.Floor(float64(si.Totalram)*float64(si.Unit)/(1<<30)/2))
}
