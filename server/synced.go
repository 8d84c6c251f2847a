package server

import (
	"hash/maphash"
	"reflect"

	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// synced remembers, per node and type, that a stream holds every resource
// it subscribes to of a typeResources: after a response (which carries all
// it lacked) or a check that found nothing missing. The next check of the
// same stream and subscription then needs only the names that differ
// between that typeResources and the current one (computed once per pair,
// for all proxies), not a walk of every subscribed name per proxy.
type synced struct {
	tr    *typeResources
	known uintptr // identity of the stream's returned-resources map
	subs  uint64  // fingerprint of the subscription
}

// seed hashes subscription names.
var seed = maphash.MakeSeed()

// syncKey identifies a watch's stream and subscription.
func syncKey(sub cache.Subscription) (known uintptr, subs uint64) {
	known = uintptr(reflect.ValueOf(sub.ReturnedResources()).UnsafePointer())
	if sub.IsWildcard() {
		return known, 1
	}
	for name := range sub.SubscribedResources() {
		subs ^= maphash.String(seed, name)
	}
	return known, subs &^ 1 // never 1 (wildcard)
}

// diffKey is a pair of typeResources.
type diffKey struct{ from, to *typeResources }

// changedLocked returns the names of to whose content differs from, or is
// missing in, from. Pairs are cached until the cache is reset.
func (c *xdsCache) changedLocked(from, to *typeResources) []string {
	k := diffKey{from, to}
	if d, ok := c.diffs[k]; ok {
		return d
	}
	if len(c.diffs) > 64 {
		clear(c.diffs)
	}
	var d []string
	for i, name := range to.names {
		if v, ok := from.versionOf(name); !ok || v != to.vers[i] {
			d = append(d, name)
		}
	}
	c.diffs[k] = d
	return d
}

// lacksLocked answers needsResponse's question from the memo: ok is false
// when the memo cannot tell (another stream or subscription, or a full
// state type whose version the request does not carry).
func (c *xdsCache) lacksLocked(n *sotwNode, w *sotwWatch, tr *typeResources) (lacks, ok bool) {
	m, found := n.synced[w.req.GetTypeUrl()]
	if !found {
		return false, false
	}
	if w.known != m.known || w.subs != m.subs {
		return false, false
	}
	if w.full {
		return false, m.tr == tr && w.req.GetVersionInfo() == tr.version
	}
	if m.tr == tr {
		return false, true
	}
	kn := w.sub.ReturnedResources()
	sub := w.sub.SubscribedResources()
	changed := c.changedLocked(m.tr, tr)
	for _, name := range changed {
		if _, in := sub[name]; !w.sub.IsWildcard() && !in {
			continue
		}
		if v, _ := tr.versionOf(name); kn[name] != v {
			w.changed = changed
			return true, true
		}
	}
	return false, true
}

// markSyncedLocked records that w's stream holds what it subscribes to of
// tr; returned, when not nil, is the map the stream's known resources
// become once the response carrying them is sent.
func (n *sotwNode) markSyncedLocked(w *sotwWatch, tr *typeResources, returned map[string]string) {
	known, subs := w.known, w.subs
	if returned != nil {
		known = uintptr(reflect.ValueOf(returned).UnsafePointer())
	}
	n.synced[w.req.GetTypeUrl()] = synced{tr: tr, known: known, subs: subs}
}
