package loadtest

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

// TestDeltaResubscribe drives deltaState through responses and checks the
// subscription changes it asks for and what it then wants.
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
			for k, st := range tt.steps {
				st.apply(s)
				got := ""
				if req := s.resubscribe(st.typeURL); req != nil {
					got = "+" + strings.Join(req.ResourceNamesSubscribe, ",") + " -" + strings.Join(req.ResourceNamesUnsubscribe, ",")
				}
				if got != st.want {
					t.Errorf("step %d: asked %q, want %q", k, got, st.want)
				}
			}
			if got := slices.Sorted(maps.Keys(s.edsWant)); !slices.Equal(got, tt.eds) {
				t.Errorf("EDS wanted %v, want %v", got, tt.eds)
			}
			if got := slices.Sorted(maps.Keys(s.rdsWant)); !slices.Equal(got, tt.rds) {
				t.Errorf("RDS wanted %v, want %v", got, tt.rds)
			}
		})
	}
}
