package meshname

import (
	"net/netip"
	"testing"
)

func TestLoopbackAddress(t *testing.T) {
	prefix := netip.MustParsePrefix(LoopbackPrefix)
	inventory := LoopbackAddress("inventory.default.svc.cluster.local")
	for _, tc := range []struct {
		host string
		same bool // same address as inventory's
	}{
		{"inventory.default.svc.cluster.local", true},
		{"Inventory.Default.svc.cluster.local.", true},
		{"inventory.default.svc.cluster.local.", true},
		{"postgres-1-vm.default.svc.cluster.local", false},
		{"inventory.other.svc.cluster.local", false},
		{"", false},
	} {
		got := LoopbackAddress(tc.host)
		if !prefix.Contains(got) || got == netip.MustParseAddr("127.255.255.255") {
			t.Errorf("LoopbackAddress(%q) = %s, not a usable address of %s", tc.host, got, LoopbackPrefix)
		}
		if (got == inventory) != tc.same {
			t.Errorf("LoopbackAddress(%q) = %s, inventory's is %s; want same=%v", tc.host, got, inventory, tc.same)
		}
	}
}

// TestLoopbackAddressSpread: a thousand service names get a thousand
// addresses (a collision is possible in principle, not among these).
func TestLoopbackAddressSpread(t *testing.T) {
	seen := map[netip.Addr]string{}
	for i := range 1000 {
		host := "svc-" + portString(uint32(i)) + ".ns.svc.cluster.local"
		a := LoopbackAddress(host)
		if other, ok := seen[a]; ok {
			t.Fatalf("%s and %s share %s", other, host, a)
		}
		seen[a] = host
	}
}

func FuzzLoopbackAddress(f *testing.F) {
	for _, s := range []string{"inventory.default.svc.cluster.local", "", ".", "DB.EXAMPLE.COM."} {
		f.Add(s)
	}
	prefix := netip.MustParsePrefix(LoopbackPrefix)
	f.Fuzz(func(t *testing.T, host string) {
		a := LoopbackAddress(host)
		if !prefix.Contains(a) || a == netip.MustParseAddr("127.255.255.255") {
			t.Fatalf("LoopbackAddress(%q) = %s", host, a)
		}
		if a != LoopbackAddress(CanonicalHost(host)) {
			t.Fatalf("LoopbackAddress(%q) differs from that of its canonical form", host)
		}
	})
}
