package loadtest

import (
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestNameSetsIntern checks that sets are shared by content: the same
// names in any order, duplicated or not, give the same set, other names
// another.
func TestNameSetsIntern(t *testing.T) {
	tests := []struct {
		name  string
		calls [][]string
		same  []int // per call, the earlier call whose set it must be, or -1 for a new set
	}{
		{name: "same names, any order, duplicates", calls: [][]string{{"b", "a", "c"}, {"a", "b", "c"}, {"c", "c", "b", "a"}}, same: []int{-1, 0, 0}},
		{name: "other names", calls: [][]string{{"a", "b"}, {"a", "c"}, {"a", "b", "c"}, {"a"}, {"b", "a"}}, same: []int{-1, -1, -1, -1, 0}},
		{name: "no names", calls: [][]string{{}, nil}, same: []int{-1, 0}},
		// A separator between names: the same bytes split differently are
		// other names.
		{name: "names that concatenate alike", calls: [][]string{{"ab", "c"}, {"a", "bc"}, {"abc"}}, same: []int{-1, -1, -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newNameSets()
			var got []*nameSet
			for k, names := range tt.calls {
				want := slices.Compact(slices.Sorted(slices.Values(names)))
				s := c.intern(slices.Clone(names))
				checkSet(t, s, want)
				switch j := tt.same[k]; {
				case j >= 0 && s != got[j]:
					t.Errorf("call %d %q: not the set of call %d", k, names, j)
				case j < 0 && slices.Contains(got, s):
					t.Errorf("call %d %q: the set of an earlier call", k, names)
				}
				got = append(got, s)
			}
			runtime.KeepAlive(got)
		})
	}
}

// checkSet checks that s is the set of want (sorted, distinct): its list,
// index and encoding.
func checkSet(t *testing.T, s *nameSet, want []string) {
	t.Helper()
	if len(want) == 0 {
		if s != nil {
			t.Errorf("set of no names is %v, want nil", s.list)
		}
		return
	}
	if !slices.Equal(s.names(), want) {
		t.Errorf("set lists %q, want %q", s.names(), want)
	}
	for i, n := range want {
		if k, ok := s.position(n); !ok || k != i {
			t.Errorf("position(%q) = %d, %v, want %d", n, k, ok, i)
		}
	}
	if _, ok := s.position("not-there"); ok || len(s.index) != len(want) {
		t.Errorf("index has %d names, want %d", len(s.index), len(want))
	}
	if !slices.Equal(s.encoded(), encodeNames(want)) {
		t.Errorf("encoded %x, want %x", s.encoded(), encodeNames(want))
	}
}

// TestNameSetsCollision forces names of different content under one hash:
// each must still get its own set.
func TestNameSetsCollision(t *testing.T) {
	c := newNameSets()
	const h = 42
	contents := [][]string{{"a", "b"}, {"c"}, {"a", "b", "c"}, {"a", "c"}}
	var sets []*nameSet
	for _, names := range contents {
		s := c.internSorted(h, names)
		checkSet(t, s, names)
		if slices.Contains(sets, s) {
			t.Fatalf("%q got the set of other names", names)
		}
		sets = append(sets, s)
	}
	for k, names := range contents {
		if s := c.internSorted(h, slices.Clone(names)); s != sets[k] {
			t.Errorf("%q again: another set", names)
		}
	}
	// A set made under another hash is not found under h, and the other
	// way round: the hash picks the candidates.
	if s := c.internSorted(h+1, []string{"a", "b"}); s == sets[0] {
		t.Error("a set found under another hash")
	}
	runtime.KeepAlive(sets)
}

// TestNameSetsConcurrent has proxies intern the same names at once, as a
// fleet does after a CDS push: they must all get one set.
func TestNameSetsConcurrent(t *testing.T) {
	c := newNameSets()
	names := make([]string, 1000)
	for i := range names {
		names[i] = fmt.Sprintf("outbound|80||svc-%d.default.svc.cluster.local", i)
	}
	sets := make([]*nameSet, 64)
	var wg sync.WaitGroup
	for g := range sets {
		wg.Go(func() {
			mine := slices.Clone(names)
			slices.Reverse(mine)
			sets[g] = c.intern(mine)
		})
	}
	wg.Wait()
	for g, s := range sets {
		if s != sets[0] {
			t.Fatalf("proxy %d got another set", g)
		}
	}
	checkSet(t, sets[0], slices.Sorted(slices.Values(names)))
}

// TestNameSetsForget checks that a set no one holds leaves the cache.
func TestNameSetsForget(t *testing.T) {
	c := newNameSets()
	kept := c.intern([]string{"kept"})
	_ = c.intern([]string{"dropped"})
	deadline := time.Now().Add(10 * time.Second)
	for c.size() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d hashes still have sets, want 1", c.size())
		}
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
	if s := c.intern([]string{"kept"}); s != kept {
		t.Error("the set still held was forgotten")
	}
}

// TestSubscription checks what a subscription records as received across
// changes of the set it wants, and when it is complete.
func TestSubscription(t *testing.T) {
	type step struct {
		want     []string // names to want (nil: none)
		got      []string // then, names that arrive
		changed  bool
		received []string // names of the set received after the step
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{name: "all arrive", steps: []step{
			{want: []string{"a", "b"}, changed: true},
			{got: []string{"a"}, received: []string{"a"}},
			{got: []string{"b", "a"}, received: []string{"a", "b"}},
		}},
		{name: "same names: no change, nothing lost", steps: []step{
			{want: []string{"a", "b"}, got: []string{"b"}, changed: true, received: []string{"b"}},
			{want: []string{"b", "a"}, received: []string{"b"}},
		}},
		{name: "a name not wanted is not recorded", steps: []step{
			{want: []string{"a"}, got: []string{"x"}, changed: true},
			{want: []string{"a", "x"}, changed: true},
		}},
		{name: "received names stay received in the new set", steps: []step{
			{want: []string{"b", "d", "f"}, got: []string{"b", "f"}, changed: true, received: []string{"b", "f"}},
			{want: []string{"a", "b", "c", "f", "g"}, changed: true, received: []string{"b", "f"}},
			{want: []string{"f"}, changed: true, received: []string{"f"}},
		}},
		{name: "a name dropped and wanted again must arrive again", steps: []step{
			{want: []string{"a", "b"}, got: []string{"a", "b"}, changed: true, received: []string{"a", "b"}},
			{want: []string{"b"}, changed: true, received: []string{"b"}},
			{want: []string{"a", "b"}, changed: true, received: []string{"b"}},
		}},
		{name: "to none and back", steps: []step{
			{want: []string{"a"}, got: []string{"a"}, changed: true, received: []string{"a"}},
			{changed: true},
			{want: []string{"a"}, changed: true},
		}},
		{name: "past 64 names", steps: []step{
			{want: numbered(0, 130), got: numbered(60, 130), changed: true, received: numbered(60, 130)},
			{want: numbered(64, 200), changed: true, received: numbered(64, 130)},
			{got: numbered(130, 200), received: numbered(64, 200)},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newNameSets()
			var s subscription
			for k, st := range tt.steps {
				if st.want != nil || st.changed {
					if changed := s.want(c.intern(slices.Clone(st.want))); changed != st.changed {
						t.Errorf("step %d: changed %v, want %v", k, changed, st.changed)
					}
				}
				for _, n := range st.got {
					s.got(n)
				}
				var received []string
				for i, n := range s.set.names() {
					if s.have.has(i) {
						received = append(received, n)
					}
				}
				if !slices.Equal(received, slices.Sorted(slices.Values(st.received))) {
					t.Errorf("step %d: received %q, want %q", k, received, st.received)
				}
				all := len(received) == len(s.set.names())
				if s.missing != len(s.set.names())-len(received) || s.have.count() != len(received) || s.complete() != all {
					t.Errorf("step %d: missing %d, %d bits, complete %v; want %d, %d, %v",
						k, s.missing, s.have.count(), s.complete(), len(s.set.names())-len(received), len(received), all)
				}
			}
			// Once settled, it records nothing and is complete whatever it wants.
			s.settle()
			if !s.complete() || s.have != nil {
				t.Error("settled: not complete or still recording")
			}
			if !s.want(c.intern([]string{"new-after-settle"})) || !s.complete() {
				t.Error("settled: a new set is not taken, or makes it incomplete")
			}
			s.got("new-after-settle")
		})
	}
}

// numbered returns names n-from ... n-(to-1), sorted.
func numbered(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("n-%03d", i))
	}
	return out
}

// TestSotWComplete checks when a SotW proxy is configured: CDS and LDS
// came, and every EDS and RDS name they made it want arrived.
func TestSotWComplete(t *testing.T) {
	c := newNameSets()
	var s sotwState
	apply := func(typ string, rs ...*parsed) (string, bool) {
		var names []string
		for _, r := range rs {
			names = s.take(typ, r, names)
		}
		return s.end(c, typ, names)
	}
	if dep, changed := apply(cdsType, &parsed{name: "a", eds: "a"}, &parsed{name: "static"}, &parsed{name: "b", eds: "b-eds"}); dep != edsType || !changed {
		t.Fatalf("CDS: %s changed %v, want EDS changed", dep, changed)
	}
	if s.complete() {
		t.Fatal("complete without LDS and endpoints")
	}
	if dep, changed := apply(ldsType, &parsed{name: "l", rds: []string{"80", "8080"}}, &parsed{name: "l2", rds: []string{"80"}}); dep != rdsType || !changed {
		t.Fatalf("LDS: %s changed %v, want RDS changed", dep, changed)
	}
	if got := s.names(rdsType); !slices.Equal(got, []string{"80", "8080"}) {
		t.Errorf("RDS names %q", got)
	}
	apply(edsType, &parsed{name: "a"}, &parsed{name: "b-eds"})
	apply(rdsType, &parsed{name: "80"})
	if s.complete() {
		t.Fatal("complete without route 8080")
	}
	// The same clusters again, in another order: nothing to ask.
	if _, changed := apply(cdsType, &parsed{name: "b", eds: "b-eds"}, &parsed{name: "a", eds: "a"}); changed {
		t.Error("CDS of the same clusters changed the EDS names")
	}
	apply(rdsType, &parsed{name: "8080"})
	if !s.complete() {
		t.Fatal("not complete with everything")
	}
	s.settle()
	if _, changed := apply(cdsType, &parsed{name: "c", eds: "c"}); !changed || !s.complete() {
		t.Errorf("settled: a new cluster changed %v, complete %v; want true, true", changed, s.complete())
	}
}
