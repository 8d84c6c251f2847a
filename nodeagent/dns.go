package nodeagent

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/librarymesh/controlplane/meshname"
)

const (
	dnsTTL        = 30 // seconds; the answer only changes with the name
	dnsTCPTimeout = 10 * time.Second
	maxUDPQuery   = 512
)

// dnsResolver answers A queries for mesh names with the service's loopback
// address (meshname.LoopbackAddress), where the VM's Envoy has the
// service's outbound listeners bound. Mesh names are those under one of its
// domains; under `svc.DOMAIN` only `NAME.NAMESPACE.svc.DOMAIN` (so a search
// list's longer tries get NXDOMAIN and the resolver goes on to the next).
// Other names are REFUSED: the VM's resolver sends only the mesh domains
// here.
//
// Once the VM sidecar's listeners are known (setServices, from the
// registration stream of a group VM), a name whose loopback address no
// listener binds is not a service and gets NXDOMAIN too.
type dnsResolver struct {
	domains []string               // lower case, no leading or trailing dot
	counted func(dnsmessage.RCode) // called with every answer's code; nil: not counted

	services atomic.Pointer[map[netip.Addr]bool] // bound service addresses; nil: not known
}

// setServices sets the service loopback addresses; it reports whether they changed.
func (r *dnsResolver) setServices(bound map[netip.Addr]bool) bool {
	old := r.services.Swap(&bound)
	return old == nil || !maps.Equal(*old, bound)
}

// isService reports whether name is a service, as far as is known.
func (r *dnsResolver) isService(name string) bool {
	s := r.services.Load()
	return s == nil || (*s)[meshname.LoopbackAddress(name)]
}

func newDNSResolver(domains []string) (*dnsResolver, error) {
	r := &dnsResolver{}
	for _, d := range domains {
		d = meshname.CanonicalHost(strings.TrimSpace(d))
		d = strings.TrimPrefix(d, ".")
		if d == "" {
			continue
		}
		if _, err := dnsmessage.NewName(d + "."); err != nil || strings.Contains(d, "..") || strings.Trim(d, "abcdefghijklmnopqrstuvwxyz0123456789-.") != "" {
			return nil, fmt.Errorf("DNS domain %q is not a domain name", d)
		}
		r.domains = append(r.domains, d)
	}
	if len(r.domains) == 0 {
		return nil, errors.New("no DNS domain to answer for")
	}
	return r, nil
}

// meshName reports whether the resolver answers for name (canonical form)
// and, when it does, whether the name exists.
func (r *dnsResolver) meshName(name string) (ours, exists bool) {
	for _, d := range r.domains {
		rest, ok := strings.CutSuffix(name, "."+d)
		if !ok {
			continue
		}
		if ns, ok := strings.CutSuffix(rest, ".svc"); ok {
			return true, strings.Count(ns, ".") == 1 && !strings.HasPrefix(ns, ".") && !strings.HasSuffix(ns, ".")
		}
		return true, rest != "svc"
	}
	return false, false
}

// answer builds the response to one query message. A query it cannot parse
// gets FORMERR when its header is readable, else no answer (nil).
func (r *dnsResolver) answer(query []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil || h.Response {
		return nil
	}
	resp := dnsmessage.Header{ID: h.ID, Response: true, OpCode: h.OpCode, RecursionDesired: h.RecursionDesired, Authoritative: true}
	q, err := p.Question()
	if err != nil || h.OpCode != 0 {
		resp.RCode = dnsmessage.RCodeFormatError
		if h.OpCode != 0 {
			resp.RCode = dnsmessage.RCodeNotImplemented
		}
		r.count(resp.RCode)
		return build(resp, nil, nil)
	}
	name := meshname.CanonicalHost(q.Name.String())
	ours, exists := r.meshName(name)
	exists = exists && r.isService(name)
	switch {
	case !ours:
		resp.RCode = dnsmessage.RCodeRefused
		resp.Authoritative = false
	case !exists:
		resp.RCode = dnsmessage.RCodeNameError
	}
	var a *dnsmessage.AResource
	if exists && q.Type == dnsmessage.TypeA && q.Class == dnsmessage.ClassINET {
		a = &dnsmessage.AResource{A: meshname.LoopbackAddress(name).As4()}
	}
	r.count(resp.RCode)
	return build(resp, &q, a)
}

func (r *dnsResolver) count(rc dnsmessage.RCode) {
	if r.counted != nil {
		r.counted(rc)
	}
}

// build encodes a response; a nil question leaves the question out.
func build(h dnsmessage.Header, q *dnsmessage.Question, a *dnsmessage.AResource) []byte {
	b := dnsmessage.NewBuilder(make([]byte, 0, 128), h)
	b.EnableCompression()
	if q != nil {
		_ = b.StartQuestions()
		_ = b.Question(*q)
	}
	if a != nil {
		_ = b.StartAnswers()
		_ = b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: dnsTTL}, *a)
	}
	out, err := b.Finish()
	if err != nil { // only a name longer than DNS allows, which parsed: cannot happen
		return nil
	}
	return out
}

// dnsServer serves a dnsResolver over UDP and TCP on one address.
type dnsServer struct {
	r   *dnsResolver
	log *slog.Logger
	udp net.PacketConn
	tcp net.Listener
}

// listenDNS binds addr (UDP and TCP, the same port).
func listenDNS(ctx context.Context, addr string, r *dnsResolver, log *slog.Logger) (*dnsServer, error) {
	var lc net.ListenConfig
	udp, err := lc.ListenPacket(ctx, "udp", addr)
	if err != nil {
		return nil, fmt.Errorf("DNS on %s: %w", addr, err)
	}
	tcp, err := lc.Listen(ctx, "tcp", udp.LocalAddr().String())
	if err != nil {
		udp.Close()
		return nil, fmt.Errorf("DNS on %s: %w", addr, err)
	}
	return &dnsServer{r: r, log: log, udp: udp, tcp: tcp}, nil
}

// Addr is the address the server listens on (UDP and TCP).
func (s *dnsServer) Addr() string { return s.udp.LocalAddr().String() }

// serve answers until ctx ends, then closes both sockets.
func (s *dnsServer) serve(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { s.serveUDP() })
	wg.Go(func() { s.serveTCP() })
	<-ctx.Done()
	s.udp.Close()
	s.tcp.Close()
	wg.Wait()
}

func (s *dnsServer) serveUDP() {
	buf := make([]byte, 4096)
	for {
		n, from, err := s.udp.ReadFrom(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Warn("DNS over UDP stopped", "error", err)
			}
			return
		}
		if resp := s.r.answer(buf[:n]); resp != nil {
			if len(resp) > maxUDPQuery {
				resp = truncated(resp)
			}
			_, _ = s.udp.WriteTo(resp, from)
		}
	}
}

// truncated is resp with only its header, TC set: the client retries over TCP.
func truncated(resp []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(resp)
	if err != nil {
		return nil
	}
	h.Truncated = true
	return build(h, nil, nil)
}

// serveTCP accepts until the listener closes, then closes the open
// connections and waits for their goroutines.
func (s *dnsServer) serveTCP() {
	var wg sync.WaitGroup
	var mu sync.Mutex
	open := map[net.Conn]bool{}
	defer func() {
		mu.Lock()
		for c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	for {
		c, err := s.tcp.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Warn("DNS over TCP stopped", "error", err)
			}
			return
		}
		mu.Lock()
		open[c] = true
		mu.Unlock()
		wg.Go(func() {
			s.serveConn(c)
			mu.Lock()
			delete(open, c)
			mu.Unlock()
		})
	}
}

// serveConn answers length-prefixed queries on one TCP connection.
func (s *dnsServer) serveConn(c net.Conn) {
	defer c.Close()
	var size [2]byte
	for {
		_ = c.SetDeadline(time.Now().Add(dnsTCPTimeout))
		if _, err := io.ReadFull(c, size[:]); err != nil {
			return
		}
		query := make([]byte, binary.BigEndian.Uint16(size[:]))
		if _, err := io.ReadFull(c, query); err != nil {
			return
		}
		resp := s.r.answer(query)
		if resp == nil {
			return
		}
		if _, err := c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(resp))), resp...)); err != nil {
			return
		}
	}
}
