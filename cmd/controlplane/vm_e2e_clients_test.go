package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/librarymesh/controlplane/internal/e2e"
)

// xdsStream is a SotW stream (ADS or SDS) that ACKs every response with the
// names it subscribed to, like Envoy, and hands the responses to the test.
type xdsStream struct {
	mu    sync.Mutex // guards Send and names
	s     sotwStream
	node  string
	names map[string][]string // subscribed names by type
	resps chan *discoveryv3.DiscoveryResponse
}

type sotwStream interface {
	Send(*discoveryv3.DiscoveryRequest) error
	Recv() (*discoveryv3.DiscoveryResponse, error)
}

func startXDS(t *testing.T, s sotwStream) *xdsStream {
	x := &xdsStream{s: s, names: map[string][]string{}, resps: make(chan *discoveryv3.DiscoveryResponse, 100)}
	go func() {
		defer close(x.resps)
		for {
			resp, err := s.Recv()
			if err != nil {
				return
			}
			x.mu.Lock()
			ack := &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: x.node}, TypeUrl: resp.GetTypeUrl(),
				ResourceNames: x.names[resp.GetTypeUrl()], VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
			err = s.Send(ack)
			x.mu.Unlock()
			if err != nil {
				return
			}
			x.resps <- resp
		}
	}()
	return x
}

// request sends a (new) subscription.
func (x *xdsStream) request(t *testing.T, node, typeURL string, names ...string) {
	t.Helper()
	x.mu.Lock()
	defer x.mu.Unlock()
	x.node, x.names[typeURL] = node, names
	req := &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: node}, TypeUrl: typeURL, ResourceNames: names}
	if err := x.s.Send(req); err != nil {
		t.Fatalf("send %s request: %v", typeURL, err)
	}
}

// waitFor reads responses until match accepts one.
func (x *xdsStream) waitFor(t *testing.T, what string, timeout time.Duration, match func(*discoveryv3.DiscoveryResponse) bool) *discoveryv3.DiscoveryResponse {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case resp, ok := <-x.resps:
			if !ok {
				t.Fatalf("stream ended while waiting for %s", what)
			}
			if match(resp) {
				return resp
			}
		case <-deadline:
			t.Fatalf("no %s within %s", what, timeout)
		}
	}
}

// openADS opens a plaintext ADS stream to the control plane.
func openADS(t *testing.T, addr string) *xdsStream {
	t.Helper()
	return startXDS(t, e2e.ADSStream(t, addr))
}

// openSDS opens an SDS stream on the agent's socket with go-control-plane's
// generated SecretDiscoveryService client and asks for default and ROOTCA.
func openSDS(t *testing.T, socket, node string) *xdsStream {
	t.Helper()
	conn := e2e.Dial(t, "unix://"+socket, insecure.NewCredentials())
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := secretv3.NewSecretDiscoveryServiceClient(conn).StreamSecrets(ctx)
	if err != nil {
		t.Fatalf("SDS stream on %s: %v", socket, err)
	}
	x := startXDS(t, stream)
	x.request(t, node, resourcev3.SecretType, "default", "ROOTCA")
	return x
}

// secrets decodes the secrets of an SDS response by name.
func secrets(t *testing.T, resp *discoveryv3.DiscoveryResponse) map[string]*tlsv3.Secret {
	t.Helper()
	out := map[string]*tlsv3.Secret{}
	for _, a := range resp.GetResources() {
		s := &tlsv3.Secret{}
		if err := a.UnmarshalTo(s); err != nil {
			t.Fatalf("SDS resource %s: %v", a.GetTypeUrl(), err)
		}
		out[s.GetName()] = s
	}
	return out
}

// leafOf parses the first certificate of the `default` secret's chain.
func leafOf(t *testing.T, s *tlsv3.Secret) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(s.GetTlsCertificate().GetCertificateChain().GetInlineBytes())
	if block == nil {
		t.Fatalf("secret %s has no PEM chain", s.GetName())
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("secret %s: %v", s.GetName(), err)
	}
	return cert
}

// nextCert waits for a `default` certificate whose serial is not notSerial
// and returns it with the response's secrets.
func nextCert(t *testing.T, x *xdsStream, notSerial string, timeout time.Duration) (*x509.Certificate, map[string]*tlsv3.Secret) {
	t.Helper()
	var got map[string]*tlsv3.Secret
	var leaf *x509.Certificate
	x.waitFor(t, "a new `default` certificate over SDS", timeout, func(resp *discoveryv3.DiscoveryResponse) bool {
		got = secrets(t, resp)
		s, ok := got["default"]
		if !ok {
			return false
		}
		leaf = leafOf(t, s)
		return leaf.SerialNumber.String() != notSerial
	})
	return leaf, got
}

// process is a running controlplane command whose stderr is kept.
type process struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	logs bytes.Buffer
	done chan struct{}
}

func (p *process) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.Write(b)
}

func (p *process) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// startProcess runs the binary with args until the test ends (SIGINT).
func startProcess(t *testing.T, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(e2e.Binary(t), args...), done: make(chan struct{})}
	p.cmd.Stderr, p.cmd.Stdout = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start controlplane %s: %v", args[0], err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("controlplane %s log:\n%s", args[0], p.Logs())
		}
	})
	return p
}

// stop ends the process with SIGINT (SIGKILL after 10 s) and waits for it.
func (p *process) stop() {
	e2e.Interrupt(p.cmd, p.done, 10*time.Second)
}

// waitLog waits until the process logged n lines containing substr.
func (p *process) waitLog(t *testing.T, substr string, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Count(p.Logs(), substr) >= n {
			return
		}
		select {
		case <-p.done:
			t.Fatalf("controlplane exited while waiting for %q:\n%s", substr, p.Logs())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("log did not show %q %d times within %s:\n%s", substr, n, timeout, p.Logs())
}
