package loadtest

import (
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestDefaultClientMemLimitIsHalfTheMachine(t *testing.T) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Skipf("no /proc/meminfo: %v", err)
	}
	var totalGiB float64
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				t.Fatal(err)
			}
			totalGiB = kb / (1 << 20)
		}
	}
	if totalGiB == 0 {
		t.Fatal("no MemTotal in /proc/meminfo")
	}
	got := DefaultClientMemLimitGiB()
	if want := max(4, math.Floor(totalGiB/2)); got != want {
		t.Errorf("DefaultClientMemLimitGiB() = %.2f, want %.2f (MemTotal %.2f GiB)", got, want, totalGiB)
	}
}
