package loadtest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The scoped scenario: the proxies fall into Services/ScopeSize groups by
// their workloads' label `group: gK` (the workloads of the i-th Service
// and of the i-th ServiceEntry are in group i mod groups). Group K's
// Sidecar lets its proxies see ScopeSize services: the K-th run of that
// many in the order svc-0, svc-1, ..., vm-0, vm-1, ...; group 0 also sees
// the Services the new-service changes add. So a change reaches the
// proxies of one group, and the others must be sent nothing.

// ScenarioScoped is scenario S with every proxy scoped to 10 services.
func ScenarioScoped() Scenario {
	s := ScenarioS()
	s.ScopeSize = 10
	return s
}

// ScenarioSmallScoped is the small scenario with every proxy scoped to 5 services.
func ScenarioSmallScoped() Scenario {
	s := ScenarioSmall()
	s.ScopeSize = 5
	return s
}

// groups is how many scope groups there are (0 when unscoped).
func (m *mesh) groups() int {
	if m.sc.ScopeSize <= 0 {
		return 0
	}
	return max(1, m.sc.Services/m.sc.ScopeSize)
}

// group is the group of the workloads of the i-th service of a kind (-1 when unscoped).
func (m *mesh) group(i int) int {
	if m.groups() == 0 {
		return -1
	}
	return i % m.groups()
}

func (m *mesh) groupLabel(i int) string {
	if g := m.group(i); g >= 0 {
		return fmt.Sprintf("g%d", g)
	}
	return ""
}

// hostIndex is a service's place in the order the groups' scopes cut.
func (m *mesh) hostIndex(i int, entry bool) int {
	if entry {
		return m.sc.kube() + i
	}
	return i
}

func (m *mesh) hostOf(index int) string {
	if index < m.sc.kube() {
		return fmt.Sprintf("svc-%d.default.svc.cluster.local", index)
	}
	return fmt.Sprintf("vm-%d.default.svc.cluster.local", index-m.sc.kube())
}

// seenBy returns which proxies see a change of the service at index (-1:
// a new Service, which group 0 sees): every proxy when unscoped.
func (m *mesh) seenBy(index int) func(ProxySpec) bool {
	if m.groups() == 0 {
		return nil
	}
	g := 0
	if index >= 0 {
		g = min(index/m.sc.ScopeSize, m.groups()-1)
	}
	return func(p ProxySpec) bool { return p.Group == g }
}

// writeSidecars writes one Sidecar per group (nothing when unscoped).
func (m *mesh) writeSidecars() error {
	if m.groups() == 0 {
		return nil
	}
	var b strings.Builder
	for g := range m.groups() {
		fmt.Fprintf(&b, "---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: scope-g%d, namespace: default}\n", g)
		fmt.Fprintf(&b, "spec:\n  workloadSelector: {labels: {group: g%d}}\n  egress:\n  - hosts:\n", g)
		last := m.sc.Services
		if g < m.groups()-1 {
			last = (g + 1) * m.sc.ScopeSize
		}
		for idx := g * m.sc.ScopeSize; idx < last; idx++ {
			fmt.Fprintf(&b, "    - default/%s\n", m.hostOf(idx))
		}
		for n := range m.sc.NewServiceChanges {
			if g == 0 {
				fmt.Fprintf(&b, "    - default/new-svc-%d.default.svc.cluster.local\n", n)
			}
		}
	}
	if err := os.WriteFile(filepath.Join(m.dir, "sidecars.yaml"), []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write sidecars: %w", err)
	}
	return nil
}

// scopeNote describes the scoping of a scenario for the report's heading.
func scopeNote(s Scenario) string {
	if s.ScopeSize <= 0 {
		return ""
	}
	return fmt.Sprintf("; each proxy scoped by a Sidecar to %d services (a change reaches one group of proxies)", s.ScopeSize)
}
