package loadtest

import (
	"math"
	"testing"
)

func TestDefaultClientMemLimitIsHalfTheMachine(t *testing.T) {
	v, err := procFields("/proc/meminfo", "MemTotal:")
	if err != nil {
		t.Skipf("no MemTotal: %v", err)
	}
	totalGiB := v[0] / (1 << 30)
	got := DefaultClientMemLimitGiB()
	if want := max(4, math.Floor(totalGiB/2)); got != want {
		t.Errorf("DefaultClientMemLimitGiB() = %.2f, want %.2f (MemTotal %.2f GiB)", got, want, totalGiB)
	}
}
