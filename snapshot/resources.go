package snapshot

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/reflect/protoreflect"
)

type validator interface{ ValidateAll() error }

// validate is res.ValidateAll, except that the virtual hosts of a route
// configuration found in valid (nil for none) are not validated again, and
// those that pass are added: a RouteConfiguration's rules on its virtual
// hosts are each virtual host's own, so the configuration without them and
// each of them passing is the whole passing. Failing, it returns the whole
// configuration's error, as Envoy's rules word it.
func validate(res types.Resource, valid map[types.Resource]struct{}) error {
	rc, ok := res.(*routev3.RouteConfiguration)
	if !ok || valid == nil || len(rc.GetVirtualHosts()) == 0 {
		return res.(validator).ValidateAll()
	}
	for _, vh := range rc.GetVirtualHosts() {
		if _, ok := valid[vh]; ok {
			continue
		}
		if vh.ValidateAll() != nil {
			return rc.ValidateAll()
		}
		valid[vh] = struct{}{}
	}
	if withoutVirtualHosts(rc).ValidateAll() != nil {
		return rc.ValidateAll()
	}
	return nil
}

// withoutVirtualHosts is a shallow copy of rc (sharing its fields' values)
// with no virtual hosts.
func withoutVirtualHosts(rc *routev3.RouteConfiguration) *routev3.RouteConfiguration {
	src := rc.ProtoReflect()
	dst := src.New()
	vhosts := src.Descriptor().Fields().ByName("virtual_hosts")
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd != vhosts {
			dst.Set(fd, v)
		}
		return true
	})
	return dst.Interface().(*routev3.RouteConfiguration)
}

// lists returns the six lists in a fixed order.
func (r *Resources) lists() []*[]types.Resource {
	return []*[]types.Resource{&r.Listeners, &r.Routes, &r.Clusters, &r.Endpoints, &r.Secrets, &r.VirtualHosts}
}

// finish sorts every list by name, drops later duplicates, and validates
// each resource. An invalid resource is left out, so one bad service does not
// take the rest of the config with it; the error names every one left out.
// Resources in valid (nil for none) passed before and are not validated
// again; those that pass are added to it.
func (r *Resources) finish(valid map[types.Resource]struct{}) error {
	var errs []error
	for _, l := range r.lists() {
		slices.SortStableFunc(*l, func(a, b types.Resource) int {
			return cmp.Compare(cachev3.GetResourceName(a), cachev3.GetResourceName(b))
		})
		*l = slices.CompactFunc(*l, func(a, b types.Resource) bool {
			return cachev3.GetResourceName(a) == cachev3.GetResourceName(b)
		})
		*l = slices.DeleteFunc(*l, func(res types.Resource) bool {
			if _, ok := valid[res]; ok {
				return false
			}
			if err := validate(res, valid); err != nil {
				errs = append(errs, fmt.Errorf("%T %q is invalid and left out: %w", res, cachev3.GetResourceName(res), err))
				return true
			}
			if valid != nil {
				valid[res] = struct{}{}
			}
			return false
		})
	}
	return errors.Join(errs...)
}

// merge joins a shared part and a proxy's own part (both finished, so
// sorted) in one pass. With no own part the shared lists are returned as they are.
func merge(shared, own *Resources) *Resources {
	if own == nil {
		return shared
	}
	out := &Resources{}
	src, ownLists, dst := shared.lists(), own.lists(), out.lists()
	for i := range dst {
		*dst[i] = mergeSorted(*src[i], *ownLists[i])
	}
	return out
}

// mergeSorted merges two lists sorted by resource name. b (a proxy's own
// part) is short, so each of its items is placed by binary search in a.
func mergeSorted(a, b []types.Resource) []types.Resource {
	if len(b) == 0 {
		return a
	}
	out := make([]types.Resource, 0, len(a)+len(b))
	for _, r := range b {
		name := cachev3.GetResourceName(r)
		n, _ := slices.BinarySearchFunc(a, name, func(x types.Resource, name string) int {
			return cmp.Compare(cachev3.GetResourceName(x), name)
		})
		out, a = append(append(out, a[:n]...), r), a[n:]
	}
	return append(out, a...)
}
