package registry

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	memdb "github.com/hashicorp/go-memdb"
)

// checkTables checks that the derived tables hold exactly the rows of the
// objects' records, and that every index has one entry per value its
// indexer gives a row (no entry left behind by a replaced or deleted
// object).
func checkTables(t *testing.T, s *Store) {
	t.Helper()
	if err := tablesConsistent(s.db.Txn(false)); err != nil {
		t.Fatal(err)
	}
}

func tablesConsistent(txn *memdb.Txn) error {
	want := map[string]map[any]bool{tableServices: {}, tableEndpoints: {}, tableWorkloads: {}, tablePolicies: {}}
	it, err := txn.Get(tableObjects, indexID)
	if err != nil {
		return err
	}
	for obj := it.Next(); obj != nil; obj = it.Next() {
		for table, r := range obj.(*objectRow).Rec.rows() {
			want[table][r] = true
		}
	}
	sch := schema()
	for _, table := range slices.Sorted(maps.Keys(sch.Tables)) {
		ts := sch.Tables[table]
		rows, err := all(txn, table, indexID)
		if err != nil {
			return err
		}
		if w, ok := want[table]; ok {
			for _, r := range rows {
				if !w[r] {
					return fmt.Errorf("table %s holds a row no object's record has: %+v", table, r)
				}
			}
			if len(rows) != len(w) {
				return fmt.Errorf("table %s holds %d rows, the objects' records %d", table, len(rows), len(w))
			}
		}
		for name, ix := range ts.Indexes {
			entries, err := all(txn, table, name)
			if err != nil {
				return err
			}
			n := 0
			for _, r := range rows {
				var vals [][]byte
				var ok bool
				switch ixr := ix.Indexer.(type) {
				case memdb.SingleIndexer:
					var v []byte
					ok, v, err = ixr.FromObject(r)
					vals = [][]byte{v}
				case memdb.MultiIndexer:
					ok, vals, err = ixr.FromObject(r)
				}
				if err != nil {
					return err
				}
				if ok {
					n += len(vals)
				}
			}
			if len(entries) != n {
				return fmt.Errorf("index %s of table %s has %d entries, its rows give %d values", name, table, len(entries), n)
			}
		}
	}
	return nil
}

// all is every entry of one index, in its order.
func all(txn *memdb.Txn, table, index string) ([]any, error) {
	it, err := txn.Get(table, index)
	if err != nil {
		return nil, fmt.Errorf("table %s index %s: %w", table, index, err)
	}
	var out []any
	for obj := it.Next(); obj != nil; obj = it.Next() {
		out = append(out, obj)
	}
	return out, nil
}
