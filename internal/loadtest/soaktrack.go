package loadtest

import (
	"bytes"
	"fmt"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/anypb"

	"github.com/librarymesh/controlplane/meshname"
)

// soakChange is one change of the soak and how each proxy shows it has
// it: a resource of typeURL for the service host carrying text (text nil:
// any such resource), or, when absent, no cluster of the host any more.
type soakChange struct {
	kind    string
	what    string
	at      time.Time // written to the folder
	minute  int       // of the churn phase, for the per-minute table
	typeURL string
	host    string
	text    []byte
	absent  bool

	// prev is the change this one overtakes (the same Service's previous
	// subset): a proxy that shows this one has that one too, or better.
	prev *soakChange

	done []atomic.Int64 // per proxy: when it ACKed the change (UnixNano), 0 until then
	left atomic.Int64
}

// mark records that proxy i has the change and those it overtook.
func (c *soakChange) mark(i int, now int64) {
	for ; c != nil; c = c.prev {
		if c.done[i].CompareAndSwap(0, now) {
			c.left.Add(-1)
		}
	}
}

// watch makes the change wait for n proxies.
func (c *soakChange) watch(n int) {
	c.done = make([]atomic.Int64, n)
	c.left.Store(int64(n))
}

// matches reports whether a resource of the change's type shows it.
func (c *soakChange) matches(name string, a *anypb.Any) bool {
	host, ok := meshname.ClusterHost(name)
	return ok && host == c.host && (c.text == nil || bytes.Contains(a.GetValue(), c.text))
}

// acked records what proxy p holds after ACKing a response of type t:
// whether it is now configured, and which pending changes it shows.
// parsed is the resources' parsed form when the caller has it; hasHost
// tells whether p holds a cluster of a host (nil: a SotW CDS response,
// which holds every cluster).
func (sk *soak) acked(p *soakProxy, t string, anys []*anypb.Any, parsed []*parsed, hasHost func(string) bool) {
	now := time.Now().UnixNano()
	if !p.configured.Load() && p.state().complete() {
		p.configured.Store(true)
		p.state().settle()
		if sk.configuredN.Add(1) == int64(len(sk.proxies)) {
			close(sk.allReady)
		}
	}
	active := sk.active.Load()
	if active == nil {
		return
	}
	var pending []*soakChange
	for _, c := range *active {
		if c.typeURL == t && c.done[p.i].Load() == 0 {
			pending = append(pending, c)
		}
	}
	if len(pending) == 0 {
		return
	}
	names := sk.names(anys, parsed)
	if hasHost == nil {
		hosts := map[string]bool{}
		for _, n := range names {
			if h, ok := meshname.ClusterHost(n); ok {
				hosts[h] = true
			}
		}
		hasHost = func(h string) bool { return hosts[h] }
	}
	for _, c := range pending {
		if c.shownBy(names, anys, hasHost) {
			c.mark(p.i, now)
		}
	}
}

// shownBy reports whether a response (names and resources) shows the change.
func (c *soakChange) shownBy(names []string, anys []*anypb.Any, hasHost func(string) bool) bool {
	if c.absent {
		return !hasHost(c.host)
	}
	for k, n := range names {
		if c.matches(n, anys[k]) {
			return true
		}
	}
	return false
}

// names returns the resources' names.
func (sk *soak) names(anys []*anypb.Any, parsed []*parsed) []string {
	out := make([]string, len(anys))
	for k, a := range anys {
		if parsed != nil {
			out[k] = parsed[k].name
			continue
		}
		if p, err := sk.parse.parse(a.GetTypeUrl(), a.GetValue()); err == nil {
			out[k] = p.name
		}
	}
	return out
}

// track adds a change to those the proxies are watched for.
func (sk *soak) track(c *soakChange) {
	sk.activeMu.Lock()
	defer sk.activeMu.Unlock()
	list := []*soakChange{c}
	if old := sk.active.Load(); old != nil {
		list = append(list, *old...)
	}
	sk.active.Store(&list)
}

// sweep drops the changes every proxy has (recording their convergence)
// and those older than the convergence timeout (counted unconverged). It
// returns how many are still pending.
func (sk *soak) sweep(now time.Time) int {
	sk.activeMu.Lock()
	defer sk.activeMu.Unlock()
	old := sk.active.Load()
	if old == nil {
		return 0
	}
	var keep []*soakChange
	for _, c := range *old {
		switch {
		case c.left.Load() == 0:
			sk.converged(c)
		case now.Sub(c.at) > sk.cfg.ConvergeTimeout:
			sk.unconverged(c)
		default:
			keep = append(keep, c)
		}
	}
	sk.active.Store(&keep)
	return len(keep)
}

// converged records a change's convergence times (slow readers left out:
// they are slow by their own doing).
func (sk *soak) converged(c *soakChange) {
	sk.mu.Lock()
	defer sk.mu.Unlock()
	for i := range c.done {
		if sk.proxies[i].slow > 0 {
			continue
		}
		ms := float64(c.done[i].Load()-c.at.UnixNano()) / 1e6
		sk.lat[c.minute] = append(sk.lat[c.minute], ms)
	}
	sk.changes[c.minute]++
}

func (sk *soak) unconverged(c *soakChange) {
	var missing []string
	for i := range c.done {
		if c.done[i].Load() == 0 && len(missing) < 3 {
			missing = append(missing, sk.proxies[i].spec.ID+" ("+sk.proxies[i].role()+")")
		}
	}
	sk.mu.Lock()
	sk.unconvergedN++
	sk.changes[c.minute]++
	sk.mu.Unlock()
	fmt.Fprintf(sk.cfg.Progress, "soak: UNCONVERGED after %v: %s (%d proxies lack it, e.g. %v)\n",
		sk.cfg.ConvergeTimeout, c.what, c.left.Load(), missing)
}
