package snapshot

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

type validator interface{ ValidateAll() error }

// lists returns the five lists in a fixed order.
func (r *Resources) lists() []*[]types.Resource {
	return []*[]types.Resource{&r.Listeners, &r.Routes, &r.Clusters, &r.Endpoints, &r.Secrets}
}

// finish sorts every list by name, drops later duplicates, and validates each resource.
func (r *Resources) finish() error {
	for _, l := range r.lists() {
		slices.SortStableFunc(*l, func(a, b types.Resource) int {
			return cmp.Compare(cachev3.GetResourceName(a), cachev3.GetResourceName(b))
		})
		*l = slices.CompactFunc(*l, func(a, b types.Resource) bool {
			return cachev3.GetResourceName(a) == cachev3.GetResourceName(b)
		})
		for _, res := range *l {
			if err := res.(validator).ValidateAll(); err != nil {
				return fmt.Errorf("%T %q is invalid: %w", res, cachev3.GetResourceName(res), err)
			}
		}
	}
	return nil
}

// merge joins a shared part and a proxy's own part (both finished). With no
// own part the shared lists are returned as they are.
func merge(shared, own *Resources) *Resources {
	if own == nil {
		return shared
	}
	out := &Resources{}
	src, dst := shared.lists(), out.lists()
	ownLists := own.lists()
	for i := range dst {
		if len(*ownLists[i]) == 0 {
			*dst[i] = *src[i]
			continue
		}
		*dst[i] = slices.Concat(*src[i], *ownLists[i])
		slices.SortStableFunc(*dst[i], func(a, b types.Resource) int {
			return cmp.Compare(cachev3.GetResourceName(a), cachev3.GetResourceName(b))
		})
	}
	return out
}
