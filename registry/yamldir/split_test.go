package yamldir

import (
	"reflect"
	"testing"
)

func TestSplitDocuments(t *testing.T) {
	in := "# header\n---\na: 1\n--- # second\n\n# only a comment\n---\nb: 2\nc: 3\n...\n"
	got := splitDocuments([]byte(in))
	type doc struct{ index, first, start int }
	var gotDocs []doc
	for _, d := range got {
		gotDocs = append(gotDocs, doc{d.index, d.firstLine, d.startLine})
	}
	want := []doc{{0, 3, 3}, {1, 8, 8}}
	if !reflect.DeepEqual(gotDocs, want) {
		t.Errorf("documents = %+v, want %+v", gotDocs, want)
	}
}

func TestFieldLine(t *testing.T) {
	doc := []byte(`kind: ServiceEntry
spec:
  ports:
  - number: 5432
    name: tcp
  - number: 0
    name: tcp2
  endpoints:
  - address: 10.0.0.1
    ports:
      tcp2: 99999
`)
	tests := []struct {
		field string
		want  int
	}{
		{"kind", 1},
		{"spec.ports[1].number", 6},
		{"spec.ports[1]", 6},
		{"spec.endpoints[0].ports[tcp2]", 11},
		{"spec.endpoints[0].weight", 9}, // missing: nearest parent
		{"spec.hosts", 2},
	}
	for _, tc := range tests {
		if got := fieldLine(doc, tc.field); got != tc.want {
			t.Errorf("fieldLine(%s) = %d, want %d", tc.field, got, tc.want)
		}
	}
}
