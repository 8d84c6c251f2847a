package snapshot

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/librarymesh/controlplane/registry"
)

// Locality load balancing, as Istio does it. The endpoints of a cluster are
// seen from the client's locality: with outlier detection, localities get
// failover priorities (same region/zone/subzone 0, same region/zone 1,
// same region 2, elsewhere 3, a region outside the rule's failover target
// 4, with failoverPriority labels ranking first; then renumbered without
// gaps); with distribute, the first rule whose `from` matches the client
// sets the localities' weights and drops the localities no `to` names.
// Istio's mesh default has locality load balancing enabled, so a rule with
// outlierDetection and no localityLbSetting fails over by locality too.

// client is a proxy as locality load balancing sees it.
type client struct {
	locality string            // region/zone/subzone; "" when unknown
	labels   map[string]string // its labels with the topology labels of its locality
}

// newClient is the client of a proxy in locality and network with labels.
func newClient(locality, network string, labels map[string]string) client {
	return client{locality: locality, labels: topologyLabels(labels, locality, network)}
}

// key names what of the client locality load balancing reads: its locality
// and its values of the labels any failoverPriority names.
func (c client) key(priorityLabels []string) string {
	var b strings.Builder
	b.WriteString(c.locality)
	if len(c.labels) > 0 {
		b.WriteString("\x00+")
	}
	for _, l := range priorityLabels {
		b.WriteString("\x00" + c.labels[l])
	}
	return b.String()
}

// topologyLabels are labels plus the topology labels Istio derives from a
// locality and network (a copy; labels is not modified).
func topologyLabels(labels map[string]string, locality, network string) map[string]string {
	if locality == "" && network == "" {
		return labels
	}
	out := maps.Clone(labels)
	if out == nil {
		out = map[string]string{}
	}
	r, z, s := splitLocality(locality)
	for k, v := range map[string]string{registry.LabelTopologyRegion: r, registry.LabelTopologyZone: z,
		registry.LabelTopologySubzone: s, registry.LabelTopologyNetwork: network} {
		if v != "" {
			out[k] = v
		}
	}
	return out
}

func splitLocality(s string) (region, zone, subzone string) {
	region, rest, _ := strings.Cut(s, "/")
	zone, subzone, _ = strings.Cut(rest, "/")
	return region, zone, subzone
}

// localityRule is the locality load balancing of one cluster.
type localityRule struct {
	setting  *registry.LocalityLB
	failover bool // the cluster has outlier detection, so priorities apply
}

// localityRuleFor is the rule a cluster policy puts in force, nil for none:
// the policy's localityLbSetting or the mesh default (enabled), unless
// disabled; it does something only with distribute or outlier detection.
func localityRuleFor(pol registry.TrafficPolicy) *localityRule {
	l := pol.LoadBalancer.GetLocality()
	if l == nil {
		l = &registry.LocalityLB{}
	}
	if l.Enabled != nil && !*l.Enabled {
		return nil
	}
	r := &localityRule{setting: l, failover: pol.OutlierDetection != nil}
	if len(l.Distribute) == 0 && !r.failover {
		return nil
	}
	return r
}

// key names the rule's content, for the shared assignment memo.
func (r *localityRule) key() string {
	if r == nil {
		return ""
	}
	return fmt.Sprintf("%t%v%v%v", r.failover, r.setting.Distribute, r.setting.Failover, r.setting.FailoverPriority)
}

// weightedLocalities reports whether the cluster needs Envoy's locality
// weighted load balancing, as Istio sets it: for distribute, and for
// failover with explicit failover or failoverPriority settings.
func (r *localityRule) weightedLocalities() bool {
	if r == nil {
		return false
	}
	l := r.setting
	return len(l.Distribute) > 0 || r.failover && len(l.Failover)+len(l.FailoverPriority) > 0
}

// applyLocalityWeighted turns on locality weighted load balancing on c.
func applyLocalityWeighted(c *clusterv3.Cluster, r *localityRule) {
	if !r.weightedLocalities() || c.GetType() == clusterv3.Cluster_ORIGINAL_DST {
		return
	}
	if c.CommonLbConfig == nil {
		c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{}
	}
	c.CommonLbConfig.LocalityConfigSpecifier = &clusterv3.Cluster_CommonLbConfig_LocalityWeightedLbConfig_{
		LocalityWeightedLbConfig: &clusterv3.Cluster_CommonLbConfig_LocalityWeightedLbConfig{},
	}
}

// localityGroup is the endpoints of one locality at one priority.
type localityGroup struct {
	locality string
	priority uint32
	eps      []*registry.Endpoint
}

// groupEndpoints groups endpoints by locality and, when the rule ranks
// failoverPriority labels, by how well their labels match the client's.
func groupEndpoints(eps []*registry.Endpoint, r *localityRule, c client) []*localityGroup {
	type groupKey struct {
		locality string
		priority uint32
	}
	byKey := map[groupKey]*localityGroup{}
	var out []*localityGroup
	for _, ep := range eps {
		prio := uint32(0)
		if r != nil && r.failover && len(r.setting.Distribute) == 0 {
			prio = labelPriority(ep, r.setting.FailoverPriority, c.labels)
		}
		k := groupKey{ep.Locality, prio}
		g, ok := byKey[k]
		if !ok {
			g = &localityGroup{locality: ep.Locality, priority: prio}
			byKey[k] = g
			out = append(out, g)
		}
		g.eps = append(g.eps, ep)
	}
	return out
}

// labelPriority ranks an endpoint by failoverPriority: 0 when it has every
// label as the client (or the `label=value` given), else len(labels)-i for
// the first label i it differs in. No client labels: all 0, as in Istio.
func labelPriority(ep *registry.Endpoint, priority []string, clientLabels map[string]string) uint32 {
	if len(priority) == 0 || len(clientLabels) == 0 {
		return 0
	}
	labels := topologyLabels(ep.Labels, ep.Locality, ep.Network)
	for i, l := range priority {
		name, want, fixed := strings.Cut(l, "=")
		if !fixed {
			want = clientLabels[name]
		}
		if labels[name] != want {
			return uint32(len(priority) - i)
		}
	}
	return 0
}

// applyLocalityFailover ranks the groups by locality relative to the
// client (on top of a failoverPriority rank), as Istio's locality failover.
func applyLocalityFailover(groups []*localityGroup, r *localityRule, c client) {
	l := r.setting
	if len(l.FailoverPriority) > 0 && len(l.Failover) == 0 {
		return
	}
	for _, g := range groups {
		g.priority = g.priority*5 + localityPriority(c.locality, g.locality, l.Failover)
	}
}

// localityPriority is 0 for the client's own locality, 1 in its zone, 2 in
// its region, 3 elsewhere, and 4 outside the failover target region when
// the rule names one for the client's region.
func localityPriority(client, ep string, failover []registry.LocalityFailover) uint32 {
	cr, cz, cs := splitLocality(client)
	er, ez, es := splitLocality(ep)
	switch {
	case cr == er && cz == ez && cs == es:
		return 0
	case cr == er && cz == ez:
		return 1
	case cr == er:
		return 2
	}
	for _, f := range failover {
		if f.From == cr {
			if er != f.To {
				return 4
			}
			break
		}
	}
	return 3
}

// renumber makes the priorities consecutive from 0, keeping their order.
func renumber(groups []*localityGroup) {
	var seen []uint32
	for _, g := range groups {
		if !slices.Contains(seen, g.priority) {
			seen = append(seen, g.priority)
		}
	}
	slices.Sort(seen)
	for _, g := range groups {
		g.priority = uint32(slices.Index(seen, g.priority))
	}
}

// localityMatch reports whether a locality matches a pattern: each of the
// pattern's region, zone and subzone equal, `*`, or left out.
func localityMatch(locality, pattern string) bool {
	lr, lz, ls := splitLocality(locality)
	pr, pz, ps := splitLocality(pattern)
	m := func(a, p string) bool { return p == "" || p == "*" || a == p }
	return m(lr, pr) && m(lz, pz) && m(ls, ps)
}

// distributeWeights returns each group's weight under the first distribute
// entry whose from matches the client (nil when none does): a `to`
// pattern's weight is shared among the groups it matches in proportion to
// their own weights, rounded up; each group goes to the most specific
// pattern matching it, and a group no pattern matches gets 0 (it is left out).
func distributeWeights(groups []*localityGroup, own []uint32, r *localityRule, c client) []uint32 {
	for _, d := range r.setting.Distribute {
		if !localityMatch(c.locality, d.From) {
			continue
		}
		out := make([]uint32, len(groups))
		taken := make([]bool, len(groups))
		for _, pattern := range specificFirst(slices.Collect(maps.Keys(d.To))) {
			var total uint64
			var matched []int
			for i, g := range groups {
				if !taken[i] && localityMatch(g.locality, pattern) {
					taken[i], matched, total = true, append(matched, i), total+uint64(own[i])
				}
			}
			for _, i := range matched {
				out[i] = uint32(math.Ceil(float64(uint64(own[i])*uint64(d.To[pattern])) / float64(total)))
			}
		}
		return out
	}
	return nil
}

// specificFirst orders locality patterns: more parts first, a wildcard
// last among equals, then by name.
func specificFirst(patterns []string) []string {
	slices.SortFunc(patterns, func(a, b string) int {
		return cmp.Or(cmp.Compare(strings.Count(b, "/"), strings.Count(a, "/")),
			cmp.Compare(strings.Count(a, "*"), strings.Count(b, "*")), cmp.Compare(a, b))
	})
	return patterns
}

// localityLbEndpoints turns the groups into Envoy's localities, sorted by
// priority then locality, with the rule's weights; a locality distribute
// gives no weight is left out.
func localityLbEndpoints(groups []*localityGroup, port registry.Port, r *localityRule, c client) []*endpointv3.LocalityLbEndpoints {
	slices.SortStableFunc(groups, func(a, b *localityGroup) int {
		return cmp.Or(cmp.Compare(a.priority, b.priority), cmp.Compare(a.locality, b.locality))
	})
	out := make([]*endpointv3.LocalityLbEndpoints, len(groups))
	own := make([]uint32, len(groups))
	for i, g := range groups {
		out[i] = &endpointv3.LocalityLbEndpoints{Locality: Locality(g.locality), Priority: g.priority, LoadBalancingWeight: wrapperspb.UInt32(0)}
		for _, ep := range g.eps {
			w := max(ep.Weight, 1)
			lb := LbEndpoint(ep.Address, ep.PortFor(port), w)
			lb.Metadata = tlsModeMetadata(ep.TLSMode)
			if ep.Unhealthy {
				lb.HealthStatus = corev3.HealthStatus_UNHEALTHY
			}
			out[i].LbEndpoints = append(out[i].LbEndpoints, lb)
			out[i].LoadBalancingWeight.Value += w
		}
		own[i] = out[i].LoadBalancingWeight.Value
	}
	if r != nil && len(r.setting.Distribute) > 0 {
		if ws := distributeWeights(groups, own, r, c); ws != nil {
			for i, w := range ws {
				out[i].LoadBalancingWeight.Value = w
			}
			out = slices.DeleteFunc(out, func(l *endpointv3.LocalityLbEndpoints) bool { return l.LoadBalancingWeight.Value == 0 })
		}
	}
	return out
}

// localityUse reports whether any of the rules makes endpoints depend on
// the client's locality, and which labels their failoverPriority lists
// compare with the client's (sorted, without duplicates).
func localityUse(rules []*registry.DestinationRule) (aware bool, labels []string) {
	visit := func(tp *registry.TrafficPolicy) {
		for _, pol := range policyParts(tp) {
			l := pol.LoadBalancer.GetLocality()
			aware = aware || pol.OutlierDetection != nil || l != nil && len(l.Distribute) > 0
			for _, fp := range l.GetFailoverPriority() {
				if name, _, fixed := strings.Cut(fp, "="); !fixed && !slices.Contains(labels, name) {
					labels = append(labels, name)
				}
			}
		}
	}
	for _, dr := range rules {
		visit(dr.TrafficPolicy)
		for i := range dr.Subsets {
			visit(dr.Subsets[i].TrafficPolicy)
		}
	}
	slices.Sort(labels)
	return aware, labels
}

// policyParts are a traffic policy and its port-level policies.
func policyParts(tp *registry.TrafficPolicy) []*registry.TrafficPolicy {
	if tp == nil {
		return nil
	}
	out := []*registry.TrafficPolicy{tp}
	for _, port := range slices.Sorted(maps.Keys(tp.PortLevel)) {
		out = append(out, tp.PortLevel[port])
	}
	return out
}
