package snapshot

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"

	"github.com/librarymesh/controlplane/meshname"
	"github.com/librarymesh/controlplane/registry"
)

// TestVMOutboundByInterceptionMode: a VM sidecar without capture gets each
// service's listeners bound on its loopback address and no virtualOutbound;
// one whose INTERCEPTION_MODE is REDIRECT gets a pod's listeners.
func TestVMOutboundByInterceptionMode(t *testing.T) {
	inventory := meshname.OutboundListener(meshname.LoopbackAddress("inventory.default.svc.cluster.local").String(), 8080)
	for _, tc := range []struct {
		mode     string
		want     []string // listeners present
		wantNone []string // listeners absent
		bind     bool     // outbound listeners bind their port
	}{
		{"NONE", []string{inventory}, []string{meshname.VirtualOutboundListener, "10.96.0.20_8080"}, true},
		{"", []string{inventory}, []string{meshname.VirtualOutboundListener}, true},
		{"REDIRECT", []string{meshname.VirtualOutboundListener, "10.96.0.20_8080"}, []string{inventory}, false},
	} {
		t.Run(cmp.Or(tc.mode, "unset"), func(t *testing.T) {
			b := NewBuilder(libraryView(meshStrict(), localMutual()), Options{})
			res, err := b.Build(mustProxy(t, vmNodeID, map[string]any{"INTERCEPTION_MODE": tc.mode}))
			if err != nil {
				t.Fatal(err)
			}
			got := names(res.Listeners)
			for _, n := range tc.want {
				if !slices.Contains(got, n) {
					t.Errorf("listeners %v lack %s", got, n)
				}
			}
			for _, n := range tc.wantNone {
				if slices.Contains(got, n) {
					t.Errorf("listeners %v hold %s", got, n)
				}
			}
			name := inventory
			if !tc.bind {
				name = "10.96.0.20_8080"
			}
			if l := find[*listenerv3.Listener](t, res.Listeners, name); l.GetBindToPort() == nil != tc.bind {
				t.Errorf("%s bind_to_port = %v, want bound=%v", name, l.GetBindToPort(), tc.bind)
			}
			if ps := b.Problems(); len(ps) > 0 {
				t.Errorf("problems: %v", ps)
			}
		})
	}
}

// A VM of a WorkloadGroup whose WorkloadEntry is not in the model yet
// already gets a VM's loopback listeners (and no inbound ones), not a
// pod's.
func TestVMOutboundBeforeRegistration(t *testing.T) {
	inventory := meshname.OutboundListener(meshname.LoopbackAddress("inventory.default.svc.cluster.local").String(), 8080)
	b := NewBuilder(libraryView(meshStrict(), localMutual()), Options{})
	res, err := b.Build(mustProxy(t, "sidecar~10.9.9.8~vm-a.default~default.svc.cluster.local",
		map[string]any{"AUTO_REGISTER_GROUP": "pg", "INTERCEPTION_MODE": "NONE"}))
	if err != nil {
		t.Fatal(err)
	}
	got := names(res.Listeners)
	if !slices.Contains(got, inventory) || slices.Contains(got, meshname.VirtualOutboundListener) {
		t.Errorf("listeners %v, want %s and no %s", got, inventory, meshname.VirtualOutboundListener)
	}
	for _, l := range res.Listeners {
		if strings.HasPrefix(l.(*listenerv3.Listener).GetName(), "inbound") {
			t.Errorf("inbound listener %s for a VM without a workload", l.(*listenerv3.Listener).GetName())
		}
	}
	for _, r := range res.Listeners {
		if err := r.(*listenerv3.Listener).ValidateAll(); err != nil {
			t.Error(err)
		}
	}
}

// TestVMOutboundSkipsUnaddressable: wildcard hosts and NONE resolution get
// no loopback listener (the original destination would be Envoy itself).
func TestVMOutboundSkipsUnaddressable(t *testing.T) {
	v := libraryView(nil, nil)
	v.services = append(v.services,
		&registry.Service{Hostname: "*.wild.example.com", Namespace: "default", Name: "wild", Resolution: registry.ResolutionNone,
			Ports: []registry.Port{{Name: "tcp", Number: 7000, Protocol: registry.ProtocolTCP}}},
		&registry.Service{Hostname: "headless.default.svc.cluster.local", Namespace: "default", Name: "headless", Resolution: registry.ResolutionNone,
			Ports: []registry.Port{{Name: "tcp", Number: 7001, Protocol: registry.ProtocolTCP}}})
	res, err := NewBuilder(v, Options{}).Build(mustProxy(t, vmNodeID, nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names(res.Listeners) {
		if strings.HasSuffix(n, "_7000") || strings.HasSuffix(n, "_7001") {
			t.Errorf("listener %s for a service without a loopback address", n)
		}
	}
}

// collidingHosts returns two service host names that share a loopback address.
func collidingHosts(t *testing.T) (string, string) {
	seen := map[string]string{}
	for i := range 1 << 20 {
		h := fmt.Sprintf("svc-%d.default.svc.cluster.local", i)
		a := meshname.LoopbackAddress(h).String()
		if other, ok := seen[a]; ok {
			return other, h
		}
		seen[a] = h
	}
	t.Fatal("no two host names share a loopback address")
	return "", ""
}

// TestVMOutboundLoopbackCollision: two services whose names share a
// loopback address share its HTTP listener (routes pick by Host), but on a
// TCP port the first keeps the listener and the second is a problem.
func TestVMOutboundLoopbackCollision(t *testing.T) {
	a, b := collidingHosts(t)
	for _, tc := range []struct {
		proto   registry.Protocol
		problem bool
	}{{registry.ProtocolHTTP, false}, {registry.ProtocolTCP, true}} {
		t.Run(string(tc.proto), func(t *testing.T) {
			v := libraryView(nil, nil)
			for _, h := range []string{a, b} {
				v.services = append(v.services, &registry.Service{Hostname: h, Namespace: "default", Name: strings.Split(h, ".")[0],
					Ports: []registry.Port{{Name: "p", Number: 7000, Protocol: tc.proto}}})
			}
			bld := NewBuilder(v, Options{})
			res, err := bld.Build(mustProxy(t, vmNodeID, nil))
			if err != nil {
				t.Fatal(err)
			}
			find[*listenerv3.Listener](t, res.Listeners, meshname.OutboundListener(meshname.LoopbackAddress(a).String(), 7000))
			ps := bld.Problems()
			if got := len(ps) == 1 && strings.Contains(ps[0].Error(), b) && strings.Contains(ps[0].Error(), a); got != tc.problem {
				t.Errorf("problems = %v, want one naming %s and %s: %v", ps, a, b, tc.problem)
			}
		})
	}
}
