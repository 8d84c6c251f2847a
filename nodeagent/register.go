package nodeagent

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/librarymesh/controlplane/snapshot/bootstrap"
)

// HealthInfoType is Istio's type URL of workload health reports, sent on
// the ADS stream as pilot-agent sends them: a DiscoveryRequest with no
// error_detail when healthy, the probe's error when not.
const HealthInfoType = "type.googleapis.com/istio.v1.HealthInformation"

// health is the last known state of the workload, handed from the prober
// to the registration stream (the latest value wins).
type health struct {
	mu      sync.Mutex
	healthy bool
	message string
	changed chan struct{} // one slot
}

func newHealth(healthy bool, message string) *health {
	return &health{healthy: healthy, message: message, changed: make(chan struct{}, 1)}
}

func (h *health) set(healthy bool, message string) {
	h.mu.Lock()
	h.healthy, h.message = healthy, message
	h.mu.Unlock()
	select {
	case h.changed <- struct{}{}:
	default:
	}
}

func (h *health) get() (bool, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.healthy, h.message
}

// register holds the VM's ADS stream to the control plane's TLS port with
// its certificate: the connection that keeps it registered in its
// WorkloadGroup. It sends the workload's health first and on every change,
// and reconnects with backoff until ctx ends.
func (a *Agent) register(ctx context.Context, h *health) {
	node := bootstrap.Node(a.bootstrapOptions())
	var retry time.Duration
	for ctx.Err() == nil {
		if a.Current() == nil {
			sleep(ctx, 100*time.Millisecond) // the first certificate is on its way
			continue
		}
		start := time.Now()
		err := a.stream(ctx, node, h)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > a.cfg.RetryMax {
			retry = 0
		}
		retry = a.nextRetry(retry)
		a.m.streamEnded(err)
		a.logStreamEnd(err, retry)
		sleep(ctx, retry)
	}
}

func (a *Agent) logStreamEnd(err error, retry time.Duration) {
	switch status.Code(err) {
	case codes.PermissionDenied, codes.FailedPrecondition, codes.ResourceExhausted, codes.AlreadyExists, codes.Unauthenticated:
		a.log.Error("the control plane refused to register this VM", "error", err, "retry_in", retry)
	default:
		a.log.Warn("registration stream ended; reconnecting", "error", err, "retry_in", retry)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// stream runs one registration stream until it fails or ctx ends.
func (a *Agent) stream(ctx context.Context, node *corev3.Node, h *health) error {
	conn, err := a.dialXDS()
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return fmt.Errorf("open ADS stream to %s: %w", a.cfg.Workload.PilotAddress, err)
	}
	var sendMu sync.Mutex
	send := func(r *discoveryv3.DiscoveryRequest) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return st.Send(r)
	}
	recvErr := make(chan error, 1)
	go func() {
		for {
			resp, err := st.Recv()
			if err == nil {
				err = a.answerListeners(resp, send)
			}
			if err != nil {
				recvErr <- err
				return
			}
		}
	}()
	first := true
	for {
		healthy, msg := h.get()
		if err := send(healthRequest(node, first, healthy, msg)); err != nil {
			return fmt.Errorf("send health: %w", err)
		}
		if first && a.dns != nil {
			// The VM sidecar's listeners tell which mesh names are services.
			if err := send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ListenerType}); err != nil {
				return fmt.Errorf("subscribe to listeners: %w", err)
			}
		}
		if first {
			a.m.connected(true)
			defer a.m.connected(false)
			a.log.Info("registration stream open", "address", a.cfg.Workload.PilotAddress, "node", node.GetId(),
				"group", a.cfg.Workload.Group)
		}
		first = false
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-recvErr:
			return err
		case <-h.changed:
		}
	}
}

// healthRequest is one health report; the first carries the node.
func healthRequest(node *corev3.Node, first, healthy bool, message string) *discoveryv3.DiscoveryRequest {
	r := &discoveryv3.DiscoveryRequest{TypeUrl: HealthInfoType}
	if first {
		r.Node = node
	}
	if !healthy {
		r.ErrorDetail = status.New(codes.Internal, message).Proto()
	}
	return r
}

// dialXDS connects to PILOT_ADDRESS over TLS with the current certificate
// (each handshake takes the newest, so renewals apply on reconnect).
func (a *Agent) dialXDS() (*grpc.ClientConn, error) {
	a.mu.Lock()
	roots := a.rootPEM
	a.mu.Unlock()
	pool, err := parseRoots(roots)
	if err != nil {
		return nil, err
	}
	tlsCfg := &tls.Config{RootCAs: pool, ServerName: a.cfg.ServerName, MinVersion: tls.VersionTLS12, Time: a.cfg.Now,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			a.mu.Lock()
			defer a.mu.Unlock()
			if a.cur == nil {
				return &tls.Certificate{}, nil
			}
			c := a.cur.tls
			return &c, nil
		}}
	conn, err := grpc.NewClient(a.cfg.Workload.PilotAddress, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", a.cfg.Workload.PilotAddress, err)
	}
	return conn, nil
}

// runWorkload writes Envoy's bootstrap, then probes and keeps the
// registration stream until ctx ends.
func (a *Agent) runWorkload(ctx context.Context) error {
	w := a.cfg.Workload
	if err := a.writeBootstrap(); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	a.log.Info("VM of a WorkloadGroup", "group", a.cfg.Namespace+"/"+w.Group, "ip", w.IP, "name", w.Name,
		"bootstrap", w.BootstrapFile, "probe", w.Probe != nil)
	h := newHealth(true, "")
	a.m.health(true)
	if w.Probe != nil {
		h = newHealth(false, "not probed yet")
		a.m.health(false)
		pr := newProber(w.Probe, w.IP)
		pr.observe = a.m.probed
		go pr.run(ctx, func(healthy bool, msg string) {
			a.log.Info("probe result changed", "healthy", healthy, "error", msg)
			a.m.health(healthy)
			h.set(healthy, msg)
		})
	}
	go a.register(ctx, h)
	return nil
}
