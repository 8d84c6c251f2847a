package registry

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// randomUpdate is an update of one of three files: random objects (some
// invalid, some defined twice), sometimes a document problem, sometimes
// Partial, sometimes empty (the file was removed).
func randomUpdate(r *rand.Rand) OriginUpdate {
	u := OriginUpdate{Origin: fmt.Sprintf("dir/f%d.yaml", r.IntN(3))}
	for range r.IntN(5) {
		it := Item{Object: randomObject(r), Source: fmt.Sprintf("%s:%d", u.Origin, r.IntN(40)+1)}
		if r.IntN(8) == 0 { // invalid: no port
			it.Object = &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "o1", Namespace: "a"},
				Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http"}}}}
			it.Context = "document 3"
		}
		u.Items = append(u.Items, it)
	}
	if r.IntN(4) == 0 {
		u.Problems = []Problem{{Source: u.Origin + ":9", Object: "document 1", Reason: "InvalidYAML", Message: "bad"}}
		u.Partial = r.IntN(2) == 0
	}
	return u
}

// viewFields are the view's fields that hold the model (not its
// transaction and revision).
func viewFields(v *view) map[string]any {
	rv := reflect.ValueOf(v).Elem()
	out := map[string]any{}
	for i := range rv.NumField() {
		name := rv.Type().Field(i).Name
		if name == "txn" || name == "revision" {
			continue
		}
		f := rv.Field(i)
		if (f.Kind() == reflect.Map || f.Kind() == reflect.Slice) && f.Len() == 0 {
			out[name] = nil // empty and nil are the same model
			continue
		}
		out[name] = reflect.NewAt(f.Type(), f.Addr().UnsafePointer()).Elem().Interface()
	}
	return out
}

func TestApplyAllIsApplyInTurn(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	inTurn, all := NewStore(nil), NewStore(nil)
	for step := range 300 {
		batch := make([]OriginUpdate, r.IntN(6)+1)
		for i := range batch {
			batch[i] = randomUpdate(r)
		}
		before := all.view.Load()
		var want [][]Problem
		for _, u := range batch {
			want = append(want, inTurn.Apply(u))
		}
		got := all.ApplyAll(slices.Values(batch))
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: ApplyAll returned problems\n%v\nApply in turn\n%v", step, got, want)
		}
		gotView, wantView := all.view.Load(), inTurn.view.Load()
		gf, wf := viewFields(gotView), viewFields(wantView)
		for _, name := range slices.Sorted(maps.Keys(wf)) {
			if !reflect.DeepEqual(gf[name], wf[name]) {
				t.Fatalf("step %d: %s differ:\nApplyAll      %v\nApply in turn %v", step, name, gf[name], wf[name])
			}
		}
		if full := viewFields(fullView(all.db.Txn(false), 0, all.trustDomain)); !reflect.DeepEqual(gf, full) {
			t.Fatalf("step %d: the view ApplyAll left is not the view built from its tables", step)
		}
		if g, w := all.Problems(), inTurn.Problems(); !reflect.DeepEqual(g, w) {
			t.Fatalf("step %d: Problems\nApplyAll      %v\nApply in turn %v", step, g, w)
		}
		checkOneChange(t, step, all, before, gotView)
		checkTables(t, all)
		checkTables(t, inTurn)
	}
	if inTurn.view.Load().revision <= all.view.Load().revision {
		t.Errorf("Apply in turn made %d revisions, ApplyAll %d: want fewer for ApplyAll", inTurn.view.Load().revision, all.view.Load().revision)
	}
}

// checkOneChange checks that a batch made at most one revision and that its
// Change names every host and address whose model it changed.
func checkOneChange(t *testing.T, step int, s *Store, before, after *view) {
	t.Helper()
	changes := s.ChangesSince(before.revision)
	switch {
	case len(changes) > 1:
		t.Fatalf("step %d: ApplyAll made %d revisions, want at most 1", step, len(changes))
	case len(changes) == 0:
		if after.revision != before.revision {
			t.Fatalf("step %d: revision %d -> %d without a change", step, before.revision, after.revision)
		}
		changes = []Change{{}}
	}
	ch := changes[0]
	for _, h := range slices.Sorted(maps.Keys(joinKeys(before.byHost, after.byHost))) {
		if (!reflect.DeepEqual(before.byHost[h], after.byHost[h]) || !reflect.DeepEqual(before.endpoints[h], after.endpoints[h])) &&
			!slices.Contains(ch.Hostnames, h) {
			t.Fatalf("step %d: host %s changed but the change %+v does not name it", step, h, ch)
		}
	}
	for _, a := range slices.Sorted(maps.Keys(joinKeys(before.byIP, after.byIP))) {
		if !reflect.DeepEqual(before.byIP[a], after.byIP[a]) && !slices.Contains(ch.Workloads, a) {
			t.Fatalf("step %d: workload %s changed but the change %+v does not name it", step, a, ch)
		}
	}
	if !reflect.DeepEqual(before.peerAuths, after.peerAuths) && !ch.Policy {
		t.Fatalf("step %d: PeerAuthentications changed but the change %+v says no policy", step, ch)
	}
}

func joinKeys[V any](a, b map[string]V) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}
