package certauthority

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
)

// BenchmarkCreateCertificate measures CreateCertificate end to end over gRPC over TLS on
// loopback (one caller, calls in sequence) against a CA server in a child process, and,
// interleaved with the calls (a batch of each in turn, so all see the same machine), Go's
// x509.CreateCertificate of an ECDSA P-256 leaf like ours (issued by a P-256 CA, SPIFFE
// URI, serial, usages), the ceiling: that leaf plus the check of a CSR's signature,
// which is all a perfect server must do, and an empty call. It reports:
//
//   - calls/s, go-leaf/s and e2e-%-of-go-leaf (issue 20's target: at least 50);
//   - server-cpu-%-of-go-leaf: calls per second of the server process's CPU (all its
//     threads, from /proc/PID/task/*/schedstat), against go-leaf/s, so the client's CPU
//     (its TLS, its half of the handshake) does not count;
//   - ceiling-%-of-go-leaf;
//   - empty-call-us: a call of the case (its connection, credentials and request) to a
//     method nobody serves, answered Unimplemented at once: the transport's floor;
//   - floor-%-of-go-leaf: the rate of an empty call followed by the ceiling's work, the
//     best a CA behind this transport could do on this machine.
//
// The cases: a bootstrap token or a client certificate (renewal) on one kept connection,
// the same on a fresh connection per call (a TLS handshake per call), and a distinct
// bootstrap token per call (issued by the client process between calls, untimed).
//
// CA_BENCH_BASELINE=path to a test binary of another tree (with benchserver_test.go copied
// in) runs that tree's server too, its batches interleaved with ours, and reports its
// figures as base-e2e-%-of-go-leaf and base-server-cpu-%-of-go-leaf.
func BenchmarkCreateCertificate(b *testing.B) {
	base := os.Getenv("CA_BENCH_BASELINE")
	for _, c := range benchCases {
		b.Run(c.name, func(b *testing.B) {
			sides := []*benchSide{newBenchSide(b, os.Args[0], c)}
			if base != "" {
				sides = append(sides, newBenchSide(b, base, c))
			}
			benchCalls(b, sides)
		})
	}
}

// benchCase makes the caller of one case.
type benchCase struct {
	name      string
	newCaller func(b *testing.B, s *benchServer) benchCaller
}

// benchCaller makes the calls of one case: next prepares a call (untimed), invoke makes
// one RPC to a method, the way the case makes its calls (its connection, its credentials).
type benchCaller struct {
	next   func()
	invoke func(method string, req *securityv1alpha1.IstioCertificateRequest) error
}

func (c benchCaller) call(req *securityv1alpha1.IstioCertificateRequest) error {
	return c.invoke(securityv1alpha1.IstioCertificateService_CreateCertificate_FullMethodName, req)
}

// emptyMethod is served by nobody: the server answers Unimplemented at once. A call to
// it, with the same request, is what a call costs both processes in gRPC, HTTP/2, TLS,
// the loopback and the scheduler without any of the CA's work: the transport floor.
const emptyMethod = "/controlplane.bench.Floor/Empty"

func (c benchCaller) empty(req *securityv1alpha1.IstioCertificateRequest) error {
	if err := c.invoke(emptyMethod, req); status.Code(err) != codes.Unimplemented {
		return fmt.Errorf("call to %s: want Unimplemented, got %v", emptyMethod, err)
	}
	return nil
}

// invokeOn makes one RPC on conn.
func invokeOn(ctx context.Context, conn grpc.ClientConnInterface, method string, req *securityv1alpha1.IstioCertificateRequest) error {
	return conn.Invoke(ctx, method, req, new(securityv1alpha1.IstioCertificateResponse))
}

var benchCases = []benchCase{
	{"token_reused_conn", func(b *testing.B, s *benchServer) benchCaller {
		conn := s.dial(b, nil)
		ctx := withBearer(b.Context(), s.token(b))
		return benchCaller{invoke: func(method string, req *securityv1alpha1.IstioCertificateRequest) error {
			return invokeOn(ctx, conn, method, req)
		}}
	}},
	{"renewal_reused_conn", func(b *testing.B, s *benchServer) benchCaller {
		conn := s.dial(b, s.clientCert(b))
		return benchCaller{invoke: func(method string, req *securityv1alpha1.IstioCertificateRequest) error {
			return invokeOn(b.Context(), conn, method, req)
		}}
	}},
	{"token_fresh_conn", func(b *testing.B, s *benchServer) benchCaller {
		ctx := withBearer(b.Context(), s.token(b))
		return benchCaller{invoke: func(method string, req *securityv1alpha1.IstioCertificateRequest) error {
			return s.callOnce(nil, func(conn grpc.ClientConnInterface) error { return invokeOn(ctx, conn, method, req) })
		}}
	}},
	{"renewal_fresh_conn", func(b *testing.B, s *benchServer) benchCaller {
		cert := s.clientCert(b)
		return benchCaller{invoke: func(method string, req *securityv1alpha1.IstioCertificateRequest) error {
			return s.callOnce(cert, func(conn grpc.ClientConnInterface) error { return invokeOn(b.Context(), conn, method, req) })
		}}
	}},
	{"token_distinct", func(b *testing.B, s *benchServer) benchCaller {
		conn := s.dial(b, nil)
		ctx := b.Context()
		return benchCaller{
			next: func() { ctx = withBearer(b.Context(), s.token(b)) },
			invoke: func(method string, req *securityv1alpha1.IstioCertificateRequest) error {
				return invokeOn(ctx, conn, method, req)
			},
		}
	}},
}

// benchBatch is how many calls to each server, then Go leaves, then ceiling operations
// run in turn.
const benchBatch = 32

// benchSide is one server under test and its caller, with what was measured of it.
type benchSide struct {
	s                              *benchServer
	c                              benchCaller
	req                            *securityv1alpha1.IstioCertificateRequest
	calls                          int
	cpuCalls                       int // the calls of closed windows
	callTime, serverCPU, clientCPU time.Duration
	windowServer, windowClient     time.Duration // at the start of the open window
	windowCalls                    int
}

func newBenchSide(b *testing.B, bin string, c benchCase) *benchSide {
	s := startBenchServer(b, bin)
	sd := &benchSide{s: s, c: c.newCaller(b, s),
		req: &securityv1alpha1.IstioCertificateRequest{Csr: makeCSR(b, newP256(b))}}
	if sd.c.next != nil {
		sd.c.next()
	}
	if err := sd.c.call(sd.req); err != nil { // warm up the connection and the server
		b.Fatal(err)
	}
	return sd
}

// call makes one call; with timed, the benchmark timer runs during the call alone.
func (sd *benchSide) call(b *testing.B, timed bool) {
	if sd.c.next != nil {
		if timed {
			b.StopTimer()
		}
		sd.c.next()
		if timed {
			b.StartTimer()
		}
	}
	start := time.Now()
	if err := sd.c.call(sd.req); err != nil {
		b.Fatal(err)
	}
	sd.callTime += time.Since(start)
	sd.calls++
	sd.windowCalls++
}

// open starts a window of calls whose CPU is read.
func (sd *benchSide) open(b *testing.B) {
	sd.windowServer, sd.windowClient, sd.windowCalls = sd.s.cpu(b), processCPU(b, os.Getpid()), 0
}

// close ends the window; its calls count for the CPU figures.
func (sd *benchSide) close(b *testing.B) {
	self := processCPU(b, os.Getpid()) // first: reading the server's CPU is not the client's
	sd.clientCPU += self - sd.windowClient
	sd.serverCPU += sd.s.cpu(b) - sd.windowServer
	sd.cpuCalls += sd.windowCalls
}

func (sd *benchSide) report(b *testing.B, prefix string, leafRate float64) {
	callRate := float64(sd.calls) / sd.callTime.Seconds()
	b.ReportMetric(100*callRate/leafRate, prefix+"e2e-%-of-go-leaf")
	if sd.serverCPU > 0 {
		b.ReportMetric(100*float64(sd.cpuCalls)/sd.serverCPU.Seconds()/leafRate, prefix+"server-cpu-%-of-go-leaf")
	}
	// Where a call's time goes, per call in microseconds: the server process's CPU and
	// this process's CPU while it makes the calls (gRPC, TLS, the runtime, the collection
	// of what the go-leaf batches left, and in token_distinct the issuing of the next
	// token).
	b.ReportMetric(float64(sd.serverCPU.Microseconds())/float64(sd.cpuCalls), prefix+"server-cpu-us/call")
	b.ReportMetric(float64(sd.clientCPU.Microseconds())/float64(sd.cpuCalls), prefix+"client-cpu-us/call")
	if prefix == "" {
		b.ReportMetric(callRate, "calls/s")
	}
}

func benchCalls(b *testing.B, sides []*benchSide) {
	ours := sides[0]
	leaf := newLeafSigner(b)
	csr := ours.req.Csr
	var refN int // of each reference: leaves, ceilings, empty calls
	var leafTime, ceilingTime, emptyTime time.Duration
	refs := func() {
		leafTime += timeN(benchBatch, func() { leaf.sign(b) })
		ceilingTime += timeN(benchBatch, func() { ceiling(b, leaf, csr) })
		emptyTime += timeN(benchBatch, func() {
			if err := ours.c.empty(ours.req); err != nil {
				b.Fatal(err)
			}
		})
		refN += benchBatch
	}
	ours.open(b)
	for b.Loop() {
		ours.call(b, true)
		if ours.windowCalls < benchBatch {
			continue
		}
		b.StopTimer()
		ours.close(b)
		for _, other := range sides[1:] {
			other.open(b)
			for range benchBatch {
				other.call(b, false)
			}
			other.close(b)
		}
		refs()
		ours.open(b)
		b.StartTimer()
	}
	// The calls of the last, partial window count for the rates, not for the CPU, unless
	// there was no full window: then that one and a batch of references.
	if ours.cpuCalls == 0 {
		ours.close(b)
		refs()
	}
	leafRate := float64(refN) / leafTime.Seconds()
	b.ReportMetric(leafRate, "go-leaf/s")
	b.ReportMetric(1e6/leafRate, "go-leaf-us")
	b.ReportMetric(100*float64(refN)/ceilingTime.Seconds()/leafRate, "ceiling-%-of-go-leaf")
	b.ReportMetric(float64(emptyTime.Microseconds())/float64(refN), "empty-call-us")
	b.ReportMetric(100*float64(refN)/(emptyTime+ceilingTime).Seconds()/leafRate, "floor-%-of-go-leaf")
	ours.report(b, "", leafRate)
	for _, other := range sides[1:] {
		other.report(b, "base-", leafRate)
	}
}

func timeN(n int, f func()) time.Duration {
	start := time.Now()
	for range n {
		f()
	}
	return time.Since(start)
}

// ceiling is what a perfect server must do per call: check the CSR's signature and
// sign the leaf.
func ceiling(b *testing.B, l *leafSigner, csrPEM string) {
	if _, err := parseCSR([]byte(csrPEM)); err != nil {
		b.Fatal(err)
	}
	l.sign(b)
}

// benchServer is a CA server in a child process (see benchServerEnv), and a CA of the same
// data folder in this process that issues its tokens and client certificates.
type benchServer struct {
	addr string
	pid  int
	ca   *CA
	// tlsConfig trusts the CA's root.
	tlsConfig *tls.Config
}

// startBenchServer runs bin (a test binary holding benchserver_test.go) as the server.
func startBenchServer(b *testing.B, bin string) *benchServer {
	dir := b.TempDir()
	ca := newTestCA(b, benchConfig(b, dir)) // creates the root the server loads
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), benchServerEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatalf("start bench server %s: %v", bin, err)
	}
	b.Cleanup(func() {
		stdin.Close()
		cmd.Wait() //nolint:errcheck // stopped by closing stdin
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("bench server address: %v", err)
	}
	return &benchServer{addr: strings.TrimSpace(line), pid: cmd.Process.Pid, ca: ca,
		tlsConfig: &tls.Config{RootCAs: ca.Roots(), ServerName: "istiod.istio-system.svc", MinVersion: tls.VersionTLS12}}
}

// benchConfig is file mode in dir with limits that never refuse.
func benchConfig(b *testing.B, dir string) Config {
	cfg := fileConfig(dir, newClock())
	cfg.Now = time.Now
	cfg.Limits = &Limits{IdentityRate: 1e9, IdentityBurst: 1e9, GlobalRate: 1e9, GlobalBurst: 1e9}
	return cfg
}

func (s *benchServer) token(b *testing.B) string {
	tok, err := s.ca.IssueBootstrapToken("vm", "db", time.Hour, false)
	if err != nil {
		b.Fatal(err)
	}
	return tok
}

func (s *benchServer) clientCert(b *testing.B) *tls.Certificate {
	key := newP256(b)
	chain, err := s.ca.Sign(b.Context(), []byte(makeCSR(b, key)), Identity{"vm", "db"}, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	return tlsCert(b, chain, key)
}

func (s *benchServer) creds(cert *tls.Certificate) credentials.TransportCredentials {
	cfg := s.tlsConfig.Clone()
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return credentials.NewTLS(cfg)
}

// dial is a kept connection.
func (s *benchServer) dial(b *testing.B, cert *tls.Certificate) *grpc.ClientConn {
	return dialConn(b, s.addr, s.creds(cert))
}

// callOnce makes one call on a fresh connection.
func (s *benchServer) callOnce(cert *tls.Certificate, call func(grpc.ClientConnInterface) error) error {
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(s.creds(cert)))
	if err != nil {
		return err
	}
	defer conn.Close()
	return call(conn)
}

// cpu is the CPU time the server process has used.
func (s *benchServer) cpu(b *testing.B) time.Duration { return processCPU(b, s.pid) }

// processCPU is the CPU time process pid has used: the sum over its threads of the
// first field of /proc/PID/task/TID/schedstat (nanoseconds on a CPU).
func processCPU(b *testing.B, pid int) time.Duration {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, err := os.ReadDir(dir)
	if err != nil || len(tasks) == 0 {
		b.Fatalf("threads of pid %d: %v", pid, err)
	}
	var total time.Duration
	for _, t := range tasks {
		data, err := os.ReadFile(dir + "/" + t.Name() + "/schedstat")
		if err != nil {
			continue // a thread that ended
		}
		f := strings.Fields(string(data))
		if len(f) == 0 {
			continue
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			b.Fatalf("%s: %q", t, data)
		}
		total += time.Duration(ns)
	}
	return total
}

// BenchmarkP256 is what the figures above are made of: an ECDSA P-256 signature and its
// verification, Go's leaf (x509.CreateCertificate, which signs and then verifies its own
// signature), the CSR check (parse and verify) and the ceiling (leaf + CSR check). Each
// iteration does each once, in turn, so their ratios hold on a busy machine; it reports
// each in microseconds and verify-per-sign, go-leaf-per-sign and ceiling-%-of-go-leaf.
func BenchmarkP256(b *testing.B) {
	key := newP256(b)
	digest := sha256.Sum256([]byte("benchmark"))
	sig, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
	if err != nil {
		b.Fatal(err)
	}
	csr := makeCSR(b, newP256(b))
	l := newLeafSigner(b)
	ops := []struct {
		name string
		op   func()
		took time.Duration
	}{
		{name: "sign", op: func() {
			if _, err := ecdsa.SignASN1(rand.Reader, key, digest[:]); err != nil {
				b.Fatal(err)
			}
		}},
		{name: "verify", op: func() {
			if !ecdsa.VerifyASN1(&key.PublicKey, digest[:], sig) {
				b.Fatal("signature does not verify")
			}
		}},
		{name: "go-leaf", op: func() { l.sign(b) }},
		{name: "csr-check", op: func() {
			if _, err := parseCSR([]byte(csr)); err != nil {
				b.Fatal(err)
			}
		}},
		{name: "ceiling", op: func() { ceiling(b, l, csr) }},
	}
	n := 0
	for b.Loop() {
		for i := range ops {
			start := time.Now()
			ops[i].op()
			ops[i].took += time.Since(start)
		}
		n++
	}
	us := map[string]float64{}
	for _, o := range ops {
		us[o.name] = float64(o.took.Microseconds()) / float64(n)
		b.ReportMetric(us[o.name], o.name+"-us")
	}
	b.ReportMetric(us["verify"]/us["sign"], "verify-per-sign")
	b.ReportMetric(us["go-leaf"]/us["sign"], "go-leaf-per-sign")
	b.ReportMetric(100*us["go-leaf"]/us["ceiling"], "ceiling-%-of-go-leaf")
}

// leafSigner issues leaves as our CA does, with nothing around it: a P-256 issuer and a
// template with a fresh 128-bit serial, a SPIFFE URI and a workload's usages.
type leafSigner struct {
	issuer *x509.Certificate
	key    *ecdsa.PrivateKey
	pub    *ecdsa.PublicKey
	uri    *url.URL
}

func newLeafSigner(b *testing.B) *leafSigner {
	key := newP256(b)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{Organization: []string{"cluster.local"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		b.Fatal(err)
	}
	issuer, err := x509.ParseCertificate(der)
	if err != nil {
		b.Fatal(err)
	}
	uri, _ := url.Parse("spiffe://cluster.local/ns/vm/sa/db")
	return &leafSigner{issuer: issuer, key: key, pub: &newP256(b).PublicKey, uri: uri}
}

func (l *leafSigner) sign(b *testing.B) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: serial, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, URIs: []*url.URL{l.uri}}
	if _, err := x509.CreateCertificate(rand.Reader, tmpl, l.issuer, l.pub, l.key); err != nil {
		b.Fatal(err)
	}
}
