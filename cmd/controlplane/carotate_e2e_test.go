package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"crypto/elliptic"
	"crypto/rand"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/xds"
	securityv1alpha1 "istio.io/api/security/v1alpha1"

	"github.com/librarymesh/controlplane/certauthority"
	"github.com/librarymesh/controlplane/internal/e2e"
)

// rotateCertTTL is the workloads' certificate lifetime: they renew every 5 s.
const rotateCertTTL = 10 * time.Second

// TestRotateRootUnderLoad: a proxyless grpc-go xDS server (certificates from
// the node agent) and a grpc-go client (certificates it renews itself from
// the CA, as pilot-agent does) make RPCs over mTLS, a new connection each,
// while `ca rotate` runs through its three phases. No RPC fails, and at the
// end both hold certificates chaining to the new root only, and the old root
// is gone from DATA/root-cert.pem, /debug/ca, the CreateCertificate answer,
// the TLS port's certificate chain and the configuration the proxies ACKed.
func TestRotateRootUnderLoad(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := lis.Addr().(*net.TCPAddr).Port
	cfgDir := t.TempDir()
	e2e.WriteFileAtomic(t, filepath.Join(cfgDir, "echo.yaml"), fmt.Sprintf(echoMeshYAML, port, "127.0.0.1"))
	e2e.WriteFileAtomic(t, filepath.Join(cfgDir, "policy.yaml"), meshPolicyYAML())
	srv := e2e.Serve(t, "--config-dir", cfgDir, "--ca-resync", "200ms")
	oldRoot := readFile(t, filepath.Join(srv.DataDir, "root-cert.pem"))

	serverFiles := startEchoAgent(t, srv, port)
	serveEchoXDS(t, lis, proxylessBootstrapRefresh(t, srv.GRPCAddr, "sidecar~127.0.0.1~echo-1.default~default.svc.cluster.local", serverFiles, "0.2s"))
	client := newRenewingClient(t, srv, oldRoot)
	go client.run(t.Context())
	load := startRPCLoad(t, fmt.Sprintf("xds:///echo.default.svc.cluster.local:%d", port),
		proxylessBootstrapRefresh(t, srv.GRPCAddr, "sidecar~127.0.0.2~inventory-1.default~default.svc.cluster.local", client.files, "0.2s"))
	e2e.Eventually(t, "the first RPCs over mTLS", 30*time.Second, func() bool { return load.ok.Load() >= 5 })

	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	out, err := e2e.Run(ctx, t, "ca", "rotate", "--data-dir", srv.DataDir, "--server", srv.HTTPAddr, "--poll", "200ms")
	t.Logf("ca rotate:\n%s", out)
	if err != nil || !strings.Contains(out, "done:") {
		t.Fatalf("ca rotate: %v\n%s", err, srv.Logs())
	}
	st := caStatus(t, srv)
	newRoot := st.Roots[0]
	newRootPEM := readFile(t, filepath.Join(srv.DataDir, "root-cert.pem"))
	e2e.Eventually(t, "both workloads on the new root alone", 30*time.Second, func() bool {
		return onlyRoot(serverFiles, newRootPEM) && onlyRoot(client.files, newRootPEM)
	})
	okBefore := load.ok.Load()
	e2e.Eventually(t, "RPCs with the new certificates", 30*time.Second, func() bool { return load.ok.Load() >= okBefore+5 })
	load.stop()
	t.Logf("RPCs: %d succeeded, %d failed during the rotation", load.ok.Load(), load.failed.Load())
	if n := load.failed.Load(); n != 0 {
		t.Errorf("%d RPCs failed; first error: %v", n, load.firstErr())
	}
	checkOldRootGone(t, srv, oldRoot, newRoot, client.lastBundle())
}

// startEchoAgent runs the node agent for default/echo with 10 s
// certificates and returns its output files.
func startEchoAgent(t *testing.T, srv *e2e.Server, port int) meshCertFiles {
	t.Helper()
	root, bundleDir := t.TempDir(), t.TempDir()
	runCP(t, "vm", "bundle", "--name", "echo-1", "--namespace", "default", "--service-account", "echo",
		"--ip", "127.0.0.1", "--ports", strconv.Itoa(port), "--address", srv.SecureGRPCAddr, "-o", bundleDir,
		"--data-dir", srv.DataDir, "--token-ttl", "1m", "--cert-ttl", rotateCertTTL.String())
	agent := startProcess(t, agentArgs(root, bundleDir)...)
	agent.waitLog(t, "certificate issued", 1, 30*time.Second)
	certs := filepath.Join(root, "vm", "certs")
	return meshCertFiles{cert: filepath.Join(certs, "cert-chain.pem"), key: filepath.Join(certs, "key.pem"), ca: filepath.Join(certs, "root-cert.pem")}
}

// renewingClient keeps default/inventory's certificate files fresh the way
// Istio's agent does: a bootstrap token first, then renewal with the current
// certificate at half-life; the trust bundle is the answer's last element.
type renewingClient struct {
	srv   *e2e.Server
	files meshCertFiles
	mu    sync.Mutex
	cert  *tls.Certificate
	roots []byte
}

func newRenewingClient(t *testing.T, srv *e2e.Server, rootPEM []byte) *renewingClient {
	t.Helper()
	dir := t.TempDir()
	c := &renewingClient{srv: srv, roots: rootPEM, files: meshCertFiles{cert: filepath.Join(dir, "cert-chain.pem"),
		key: filepath.Join(dir, "key.pem"), ca: filepath.Join(dir, "root-cert.pem")}}
	token := tokenCreate(t, srv.DataDir, "default", "inventory", "--ttl", "1h")
	if err := c.renew(withBearer(t.Context(), token)); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *renewingClient) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(rotateCertTTL / 2):
		}
		for c.renew(ctx) != nil && ctx.Err() == nil {
			time.Sleep(200 * time.Millisecond)
		}
	}
}

func (c *renewingClient) renew(ctx context.Context) error {
	c.mu.Lock()
	cur, roots := c.cert, c.roots
	c.mu.Unlock()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(roots)
	cfg := &tls.Config{RootCAs: pool, ServerName: servingName, MinVersion: tls.VersionTLS12}
	if cur != nil {
		cfg.Certificates = []tls.Certificate{*cur}
	}
	conn, err := grpc.NewClient(c.srv.SecureGRPCAddr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return err
	}
	defer conn.Close()
	key, csr, err := workloadCSR()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := securityv1alpha1.NewIstioCertificateServiceClient(conn).CreateCertificate(ctx,
		&securityv1alpha1.IstioCertificateRequest{Csr: csr, ValidityDuration: int64(rotateCertTTL / time.Second)})
	if err != nil {
		return err
	}
	return c.install(resp.GetCertChain(), key)
}

// install writes the key, then the chain, then the bundle (a reader that
// sees a new chain finds its key).
func (c *renewingClient) install(chain []string, key *ecdsa.PrivateKey) error {
	bundle := []byte(chain[len(chain)-1])
	leafAndInters := []byte(strings.Join(chain[:len(chain)-1], ""))
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	pair, err := tls.X509KeyPair(leafAndInters, keyPEM)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		path string
		data []byte
	}{{c.files.key, keyPEM}, {c.files.cert, leafAndInters}, {c.files.ca, bundle}} {
		if err := writeAtomic(f.path, f.data); err != nil {
			return err
		}
	}
	c.mu.Lock()
	c.cert, c.roots = &pair, bundle
	c.mu.Unlock()
	return nil
}

func (c *renewingClient) lastBundle() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.roots
}

func workloadCSR() (*ecdsa.PrivateKey, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, "", err
	}
	return key, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), nil
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// rpcLoad makes health RPCs, each on a new connection (a new mTLS
// handshake with the certificates of the moment), through one xDS client.
type rpcLoad struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	first      error
	cancel     context.CancelFunc
	done       chan struct{}
}

func startRPCLoad(t *testing.T, target string, bootstrap []byte) *rpcLoad {
	t.Helper()
	rb, err := xds.NewXDSResolverWithConfigForTesting(bootstrap)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		t.Fatal(err)
	}
	// A long-lived channel keeps the xDS client (one proxy) connected.
	keep, err := grpc.NewClient(target, grpc.WithResolvers(rb), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { keep.Close() })
	ctx, cancel := context.WithCancel(t.Context())
	l := &rpcLoad{cancel: cancel, done: make(chan struct{})}
	t.Cleanup(l.stop)
	// Wait for the mesh to be in place before counting.
	e2e.Eventually(t, "the echo server over xDS", 30*time.Second, func() bool {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := healthpb.NewHealthClient(keep).Check(c, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
		return err == nil
	})
	go l.run(ctx, target, rb, creds)
	return l
}

func (l *rpcLoad) run(ctx context.Context, target string, rb resolver.Builder, creds credentials.TransportCredentials) {
	defer close(l.done)
	for ctx.Err() == nil {
		err := l.call(ctx, target, rb, creds)
		switch {
		case ctx.Err() != nil:
		case err != nil:
			l.failed.Add(1)
			l.mu.Lock()
			if l.first == nil {
				l.first = err
			}
			l.mu.Unlock()
		default:
			l.ok.Add(1)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (l *rpcLoad) call(ctx context.Context, target string, rb resolver.Builder, creds credentials.TransportCredentials) error {
	cc, err := grpc.NewClient(target, grpc.WithResolvers(rb), grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer cc.Close()
	c, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(cc).Check(c, &healthpb.HealthCheckRequest{})
	return err
}

func (l *rpcLoad) stop() {
	l.cancel()
	<-l.done
}

func (l *rpcLoad) firstErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.first
}

// onlyRoot reports whether the files' bundle is root alone and their leaf
// chains to it.
func onlyRoot(f meshCertFiles, root []byte) bool {
	bundle, err1 := os.ReadFile(f.ca)
	chain, err2 := os.ReadFile(f.cert)
	if err1 != nil || err2 != nil || string(bundle) != string(root) {
		return false
	}
	return verifiesTo(chain, root) == nil
}

func verifiesTo(chainPEM, rootPEM []byte) error {
	var certs []*x509.Certificate
	for b, rest := pem.Decode(chainPEM); b != nil; b, rest = pem.Decode(rest) {
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return fmt.Errorf("no certificate")
	}
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AppendCertsFromPEM(rootPEM)
	for _, c := range certs[1:] {
		inters.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err
}

func caStatus(t *testing.T, srv *e2e.Server) certauthority.Status {
	t.Helper()
	var st certauthority.Status
	if err := json.Unmarshal([]byte(e2e.HTTPGet(t, "http://"+srv.HTTPAddr+"/debug/ca")), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// checkOldRootGone checks every consumer of the trust bundle the server
// controls holds the new root only.
func checkOldRootGone(t *testing.T, srv *e2e.Server, oldRoot []byte, newRoot certauthority.Root, lastAnswer []byte) {
	t.Helper()
	st := caStatus(t, srv)
	if len(st.Roots) != 1 || st.Roots[0].ID != newRoot.ID || st.Rotation != nil {
		t.Errorf("/debug/ca: roots %+v, rotation %+v; want the new root alone", st.Roots, st.Rotation)
	}
	newPEM := readFile(t, filepath.Join(srv.DataDir, "root-cert.pem"))
	if strings.Count(string(newPEM), "BEGIN CERTIFICATE") != 1 || string(newPEM) == string(oldRoot) {
		t.Errorf("DATA/root-cert.pem is not the new root alone")
	}
	if string(lastAnswer) != string(newPEM) {
		t.Errorf("the last CreateCertificate answer ends with another bundle:\n%s", lastAnswer)
	}
	conn, err := tls.Dial("tcp", srv.SecureGRPCAddr, &tls.Config{ServerName: servingName, InsecureSkipVerify: true, NextProtos: []string{"h2"}}) //nolint:gosec // the chain is verified below
	if err != nil {
		t.Fatal(err)
	}
	var chain []byte
	for _, c := range conn.ConnectionState().PeerCertificates {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	conn.Close()
	if err := verifiesTo(chain, newPEM); err != nil || strings.Contains(string(chain), strings.TrimSpace(string(oldRoot))) {
		t.Errorf("the TLS port's chain does not chain to the new root alone: %v", err)
	}
	var tb struct {
		Bundle       string
		Acked, Total int
	}
	e2e.Eventually(t, "every proxy ACKed the new bundle's configuration", 20*time.Second, func() bool {
		_ = json.Unmarshal([]byte(e2e.HTTPGet(t, "http://"+srv.HTTPAddr+"/debug/trustbundle")), &tb)
		return tb.Bundle == st.Bundle && tb.Total >= 2 && tb.Acked == tb.Total
	})
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
