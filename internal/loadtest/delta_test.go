package loadtest

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
)

// TestDeltaResubscribe drives deltaState through responses and checks the
// subscription changes it asks for and what it then wants. What it is
// subscribed to must be what it asked for so far, also while changes
// are pending (subscribed derives it from what is needed).
func TestDeltaResubscribe(t *testing.T) {
	type step struct {
		typeURL string
		apply   func(*deltaState)
		want    string // "+sub,sub -unsub" or "" for no request
	}
	tests := []struct {
		name     string
		steps    []step
		eds, rds []string
	}{
		{name: "clusters added, one removed", steps: []step{
			{cdsType, func(s *deltaState) {
				s.setCluster("a", "a", true)
				s.setCluster("b", "b-eds", true)
				s.setCluster("static", "", true)
			}, "+a,b-eds -"},
			{cdsType, func(s *deltaState) { s.setCluster("c", "c", true) }, "+c -"},
			{cdsType, func(s *deltaState) { s.setCluster("a", "", false) }, "+ -a"},
		}, eds: []string{"b-eds", "c"}},
		{name: "an update that keeps the name asks nothing", steps: []step{
			{cdsType, func(s *deltaState) { s.setCluster("a", "a", true) }, "+a -"},
			{cdsType, func(s *deltaState) { s.setCluster("a", "a", true) }, ""},
			{cdsType, func(s *deltaState) { s.setCluster("a", "a2", true) }, "+a2 -a"},
		}, eds: []string{"a2"}},
		{name: "a name two clusters need goes with the last", steps: []step{
			{cdsType, func(s *deltaState) { s.setCluster("x", "shared", true); s.setCluster("y", "shared", true) }, "+shared -"},
			{cdsType, func(s *deltaState) { s.setCluster("x", "", false) }, ""},
			{cdsType, func(s *deltaState) { s.setCluster("y", "", false); s.setCluster("ghost", "", false) }, "+ -shared"},
		}},
		{name: "resources that need nothing", steps: []step{
			{cdsType, func(s *deltaState) { s.setCluster("static", "", true) }, ""},
			{ldsType, func(s *deltaState) { s.setListener("tcp", nil, true) }, ""},
			{rdsType, func(s *deltaState) { s.setRoute("80", false, true) }, ""},
			{cdsType, func(s *deltaState) { s.setCluster("static", "now-eds", true) }, "+now-eds -"},
			{ldsType, func(s *deltaState) { s.setListener("tcp", nil, false); s.setListener("tcp", []string{"90"}, true) }, "+90 -"},
			{rdsType, func(s *deltaState) { s.setRoute("80", false, false) }, ""},
			{cdsType, func(s *deltaState) { s.setCluster("static", "", true) }, "+ -now-eds"},
		}, rds: []string{"90"}},
		{name: "listeners and routes with vhds", steps: []step{
			{ldsType, func(s *deltaState) {
				s.setListener("l1", []string{"80", "8080"}, true)
				s.setListener("l2", []string{"8080"}, true)
			}, "+80,8080 -"},
			{rdsType, func(s *deltaState) { s.setRoute("8080", true, true); s.setRoute("80", false, true) }, "+8080 -"},
			{ldsType, func(s *deltaState) { s.setListener("l1", nil, false) }, "+ -80"},
			{rdsType, func(s *deltaState) { s.setRoute("8080", false, true) }, "+ -8080"},
		}, rds: []string{"8080"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newDeltaState()
			asked := map[string]map[string]bool{edsType: {}, rdsType: {}, vhdsType: {}} // type -> names subscribed by the requests
			check := func(when string) {
				t.Helper()
				for typ, names := range asked {
					if got, want := slices.Sorted(s.subscribed(typ)), slices.Sorted(maps.Keys(names)); !slices.Equal(got, want) {
						t.Errorf("%s: subscribed to %v of %s, asked for %v", when, got, typ, want)
					}
				}
			}
			for k, st := range tt.steps {
				st.apply(s)
				check(fmt.Sprintf("step %d, changes pending", k))
				got := ""
				if req := s.resubscribe(st.typeURL); req != nil {
					got = "+" + strings.Join(req.ResourceNamesSubscribe, ",") + " -" + strings.Join(req.ResourceNamesUnsubscribe, ",")
					for _, n := range req.ResourceNamesSubscribe {
						asked[req.TypeUrl][n] = true
					}
					for _, n := range req.ResourceNamesUnsubscribe {
						delete(asked[req.TypeUrl], n)
					}
				}
				if got != st.want {
					t.Errorf("step %d: asked %q, want %q", k, got, st.want)
				}
				check(fmt.Sprintf("step %d", k))
			}
			if got := slices.Sorted(s.subscribed(edsType)); !slices.Equal(got, tt.eds) {
				t.Errorf("EDS wanted %v, want %v", got, tt.eds)
			}
			if got := slices.Sorted(s.subscribed(rdsType)); !slices.Equal(got, tt.rds) {
				t.Errorf("RDS wanted %v, want %v", got, tt.rds)
			}
		})
	}
}

// TestDeltaComplete checks when a delta proxy is configured: CDS and LDS
// came, every EDS and RDS name it subscribed to arrived, and VHDS came if
// it subscribed to virtual hosts.
func TestDeltaComplete(t *testing.T) {
	s := newDeltaState()
	s.setCluster("a", "a", true)
	s.setCluster("b", "b-eds", true)
	s.resubscribe(cdsType)
	s.gotCDS = true
	s.setListener("l", []string{"8080"}, true)
	s.resubscribe(ldsType)
	s.gotLDS = true
	s.hold(edsType, "a", true)
	s.hold(edsType, "b-eds", true)
	if s.complete() {
		t.Fatal("complete without route 8080")
	}
	s.hold(rdsType, "8080", true)
	if !s.complete() {
		t.Fatal("not complete with everything")
	}
	s.hold(edsType, "a", false)
	if s.complete() {
		t.Fatal("complete after endpoints a were removed")
	}
	s.hold(edsType, "a", true)
	s.setRoute("8080", true, true)
	s.resubscribe(rdsType)
	if s.complete() {
		t.Fatal("complete without VHDS")
	}
	s.gotVHDS = true
	if !s.complete() {
		t.Fatal("not complete with VHDS")
	}
	s.settle()
	s.setCluster("c", "c", true)
	s.resubscribe(cdsType)
	s.hold(edsType, "x", true)
	if !s.complete() || s.have != nil {
		t.Error("settled: incomplete, or still recording")
	}
}
