package nodeagent

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/librarymesh/controlplane/meshname"
)

// startDNS serves a resolver for domains on a free loopback port until the
// test ends and returns a Go resolver that asks it over network (udp or tcp).
func startDNS(t *testing.T, domains []string, network string) *net.Resolver {
	t.Helper()
	r, err := newDNSResolver(domains)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := listenDNS(ctx, "127.0.0.1:0", r, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, s.Addr())
	}}
}

// TestDNSAnswersMeshNames asks the agent's DNS with Go's own resolver, over
// UDP and TCP: mesh names get their service's loopback address, names that
// cannot be services NXDOMAIN, other domains a refusal.
func TestDNSAnswersMeshNames(t *testing.T) {
	inventory := meshname.LoopbackAddress("inventory.default.svc.cluster.local")
	for _, network := range []string{"udp", "tcp"} {
		res := startDNS(t, []string{"cluster.local", ".Example.Internal."}, network)
		for _, tc := range []struct {
			name string
			want netip.Addr // invalid: not found
		}{
			{"inventory.default.svc.cluster.local", inventory},
			{"inventory.default.svc.cluster.local.", inventory},
			{"INVENTORY.Default.svc.cluster.local", inventory},
			{"db.example.internal", meshname.LoopbackAddress("db.example.internal")},
			{"postgres-1-vm.default.svc.cluster.local", meshname.LoopbackAddress("postgres-1-vm.default.svc.cluster.local")},
			{"inventory.default.default.svc.cluster.local", netip.Addr{}}, // a search-list try
			{"default.svc.cluster.local", netip.Addr{}},
			{"svc.cluster.local", netip.Addr{}},
			{"example.com", netip.Addr{}}, // refused
		} {
			t.Run(network+"/"+tc.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				got, err := res.LookupNetIP(ctx, "ip4", tc.name)
				if !tc.want.IsValid() {
					var dnsErr *net.DNSError
					if err == nil || !errors.As(err, &dnsErr) {
						t.Fatalf("lookup %s = %v, %v; want a DNS error", tc.name, got, err)
					}
					return
				}
				if err != nil || len(got) != 1 || got[0] != tc.want {
					t.Fatalf("lookup %s = %v, %v; want %s", tc.name, got, err, tc.want)
				}
			})
		}
	}
}

// TestDNSRcodes checks the codes a resolver reads: NXDOMAIN for a name
// under a mesh domain that cannot be a service, REFUSED outside, NOERROR
// with no answer for AAAA of a mesh name.
func TestDNSRcodes(t *testing.T) {
	r, err := newDNSResolver([]string{"cluster.local"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		qtype   dnsmessage.Type
		rcode   dnsmessage.RCode
		answers int
	}{
		{"inventory.default.svc.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, 1},
		{"inventory.default.svc.cluster.local.", dnsmessage.TypeAAAA, dnsmessage.RCodeSuccess, 0},
		{"a.b.default.svc.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeNameError, 0},
		{"example.com.", dnsmessage.TypeA, dnsmessage.RCodeRefused, 0},
		{"cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeRefused, 0},
	} {
		t.Run(tc.name+tc.qtype.String(), func(t *testing.T) {
			msg := dnsmessage.Message{Header: dnsmessage.Header{ID: 7, RecursionDesired: true},
				Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName(tc.name), Type: tc.qtype, Class: dnsmessage.ClassINET}}}
			q, err := msg.Pack()
			if err != nil {
				t.Fatal(err)
			}
			var resp dnsmessage.Message
			if err := resp.Unpack(r.answer(q)); err != nil {
				t.Fatalf("response does not parse: %v", err)
			}
			if resp.ID != 7 || !resp.Response || resp.RCode != tc.rcode || len(resp.Answers) != tc.answers {
				t.Errorf("response %+v with %d answers; want rcode %v, %d answers", resp.Header, len(resp.Answers), tc.rcode, tc.answers)
			}
		})
	}
}

// Once the sidecar's listeners are known, a well-formed mesh name whose
// loopback address no listener binds gets NXDOMAIN; the services' names
// still resolve, and the set follows changes.
func TestDNSKnownServices(t *testing.T) {
	r, err := newDNSResolver([]string{"cluster.local", "example.internal"})
	if err != nil {
		t.Fatal(err)
	}
	ask := func(name string) (dnsmessage.RCode, int) {
		t.Helper()
		msg := dnsmessage.Message{Header: dnsmessage.Header{ID: 9},
			Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName(name + "."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}}}
		q, err := msg.Pack()
		if err != nil {
			t.Fatal(err)
		}
		var resp dnsmessage.Message
		if err := resp.Unpack(r.answer(q)); err != nil {
			t.Fatal(err)
		}
		return resp.RCode, len(resp.Answers)
	}
	inv, db, pg := "inventory.default.svc.cluster.local", "db.example.internal", "pg.default.svc.cluster.local"
	if rc, n := ask(pg); rc != dnsmessage.RCodeSuccess || n != 1 {
		t.Errorf("before the listeners are known: %s = %v with %d answers, want an address", pg, rc, n)
	}
	if !r.setServices(map[netip.Addr]bool{meshname.LoopbackAddress(inv): true, meshname.LoopbackAddress(db): true}) {
		t.Error("first set reported unchanged")
	}
	for name, want := range map[string]dnsmessage.RCode{inv: dnsmessage.RCodeSuccess, db: dnsmessage.RCodeSuccess,
		pg: dnsmessage.RCodeNameError, "other.example.internal": dnsmessage.RCodeNameError, "example.com": dnsmessage.RCodeRefused} {
		if rc, _ := ask(name); rc != want {
			t.Errorf("%s = %v, want %v", name, rc, want)
		}
	}
	if r.setServices(map[netip.Addr]bool{meshname.LoopbackAddress(db): true, meshname.LoopbackAddress(inv): true}) {
		t.Error("the same set reported changed")
	}
	r.setServices(map[netip.Addr]bool{meshname.LoopbackAddress(pg): true})
	if rc, _ := ask(inv); rc != dnsmessage.RCodeNameError {
		t.Errorf("%s after it left = %v, want NXDOMAIN", inv, rc)
	}
	if rc, n := ask(pg); rc != dnsmessage.RCodeSuccess || n != 1 {
		t.Errorf("%s after it came = %v with %d answers", pg, rc, n)
	}
}

func TestNewDNSResolverRejectsBadDomains(t *testing.T) {
	for _, domains := range [][]string{nil, {""}, {"a..b"}, {" , "}} {
		if _, err := newDNSResolver(domains); err == nil {
			t.Errorf("newDNSResolver(%q) accepted", domains)
		}
	}
}

// FuzzDNSAnswer: any bytes get no answer or a response that parses.
func FuzzDNSAnswer(f *testing.F) {
	msg := dnsmessage.Message{Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName("inventory.default.svc.cluster.local."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}}}
	q, _ := msg.Pack()
	for _, seed := range [][]byte{q, nil, {0, 1, 0, 0, 0, 1}, q[:len(q)-3]} {
		f.Add(seed)
	}
	r, err := newDNSResolver([]string{"cluster.local"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, query []byte) {
		resp := r.answer(query)
		if resp == nil {
			return
		}
		var m dnsmessage.Message
		if err := m.Unpack(resp); err != nil {
			t.Fatalf("response to %x does not parse: %v", query, err)
		}
	})
}
