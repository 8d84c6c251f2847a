package snapshot

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/librarymesh/controlplane/registry"
)

// TestProxylessGRPCEnforcesAuthz feeds the RBAC filters the Builder makes to
// a real grpc-go xDS server over mTLS and checks each kind of match is
// accepted (no NACK: the server keeps serving) and decides as Istio would
// for the client, default/client, calling grpc.health.v1.Health/Check.
func TestProxylessGRPCEnforcesAuthz(t *testing.T) {
	m := newEchoMesh(t)
	port := strconv.Itoa(int(m.port))
	m2 := func(attr string, not bool, values ...string) registry.AuthzMatch {
		return registry.AuthzMatch{Attr: attr, Not: not, Values: values}
	}
	header := func(name string, values ...string) registry.AuthzMatch {
		return registry.AuthzMatch{Attr: registry.AttrHeader, Header: name, Values: values}
	}
	rule := func(from, to, when []registry.AuthzMatch) registry.AuthzRule {
		r := registry.AuthzRule{When: when}
		if from != nil {
			r.From = [][]registry.AuthzMatch{from}
		}
		if to != nil {
			r.To = [][]registry.AuthzMatch{to}
		}
		return r
	}
	policy := func(action registry.AuthzAction, rules ...registry.AuthzRule) []*registry.AuthorizationPolicy {
		return []*registry.AuthorizationPolicy{{Namespace: "default", Name: "echo", Action: action, Rules: rules}}
	}
	tests := []struct {
		name   string
		authz  []*registry.AuthorizationPolicy
		denied bool
	}{
		{"ALLOW on namespace, path, method, port and header", policy(registry.AuthzAllow, rule(
			[]registry.AuthzMatch{m2(registry.AttrSourceNamespace, false, "default"), m2(registry.AttrSourcePrincipal, false, "cluster.local/ns/*")},
			[]registry.AuthzMatch{m2(registry.AttrPath, false, "/grpc.health.v1.Health/*"), m2(registry.AttrMethod, false, "POST"),
				m2(registry.AttrDestinationPort, false, port), m2(registry.AttrPath, true, "/admin*")},
			[]registry.AuthzMatch{header("user-agent", "grpc-go*"), m2(registry.AttrSourceIP, false, "127.0.0.0/8")})), false},
		{"ALLOW from another namespace", policy(registry.AuthzAllow, rule(
			[]registry.AuthzMatch{m2(registry.AttrSourceNamespace, true, "default")}, nil, nil)), true},
		{"ALLOW another principal", policy(registry.AuthzAllow, rule(
			[]registry.AuthzMatch{m2(registry.AttrSourcePrincipal, false, "cluster.local/ns/default/sa/echo")}, nil, nil)), true},
		{"DENY the client's account", policy(registry.AuthzDeny, rule(
			[]registry.AuthzMatch{m2(registry.AttrSourcePrincipal, false, "*/sa/client")},
			[]registry.AuthzMatch{m2(registry.AttrPath, true, "/other*")}, nil)), true},
		{"DENY another header value", policy(registry.AuthzDeny, rule(nil, nil,
			[]registry.AuthzMatch{header("x-user", "mallory")})), false},
		{"ALLOW without rules", policy(registry.AuthzAllow), true},
		{"AUDIT logs only", policy(registry.AuthzAudit, rule(nil, nil, nil)), false},
		{"CUSTOM without a provider", policy(registry.AuthzCustom, rule(nil, nil, nil)), true},
	}
	view := echoView(m.port, meshStrict(), echoMutual(nil))
	setProxySnapshot(t, m.cache, view, "0", echoClientID)
	setProxySnapshot(t, m.cache, view, "0", echoServerID)
	m.startServer(t)
	version := 0
	apply := func(t *testing.T, authz []*registry.AuthorizationPolicy, denied bool) error {
		t.Helper()
		v := echoView(m.port, meshStrict(), echoMutual(nil))
		v.authz = authz
		version++
		setProxySnapshot(t, m.cache, v, fmt.Sprint(version), echoServerID)
		return m.waitAuthz(t, denied)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Start from the opposite outcome, so the expected one proves
			// grpc-go took (did not NACK) the new listener.
			baseline := policy(registry.AuthzCustom)
			if tc.denied {
				baseline = nil
			}
			apply(t, baseline, !tc.denied)
			err := apply(t, tc.authz, tc.denied)
			t.Logf("RPC: %v", err)
		})
	}
}

// waitAuthz calls the echo server until the RPC is denied by RBAC (or
// passes, when !denied) and returns the last RPC error.
func (m *echoMesh) waitAuthz(t *testing.T, denied bool) error {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		short, cancel := context.WithTimeout(m.ctx, 3*time.Second)
		err := m.call(short, t, true)
		cancel()
		if (denied && status.Code(err) == codes.PermissionDenied) || (!denied && err == nil) {
			return err
		}
		if time.Now().After(deadline) {
			t.Fatalf("10s after the update the RPC gives %v, want denied %v", err, denied)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
