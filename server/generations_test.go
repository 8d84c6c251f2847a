package server

import "testing"

// TestGenerationsKeepWhatIsUsed: an entry used in every generation stays
// however many rotations pass (the maps are reused, not remade), one left
// unused goes with the second rotation, and one put back is found again.
func TestGenerationsKeepWhatIsUsed(t *testing.T) {
	g := newGenerations[string, int]()
	held := func(k string) bool { // without using it
		_, inCur := g.cur[k]
		_, inPrev := g.prev[k]
		return inCur || inPrev
	}
	g.put("used", 1)
	g.put("unused", 2)
	for round := 1; round <= 10; round++ {
		g.rotate()
		if v, ok := g.get("used"); !ok || v != 1 {
			t.Fatalf("rotation %d: used = %d, %v; want 1, true", round, v, ok)
		}
		if want := round < 2; held("unused") != want {
			t.Fatalf("rotation %d: unused held = %v, want %v", round, !want, want)
		}
	}
	g.put("unused", 3)
	g.rotate()
	if v, ok := g.get("unused"); !ok || v != 3 {
		t.Errorf("put again: %d, %v; want 3, true", v, ok)
	}
}
