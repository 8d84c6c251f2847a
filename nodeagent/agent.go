package nodeagent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/librarymesh/controlplane/vmbundle"
)

// Agent keeps the VM's certificate fresh and serves it over SDS.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	token string
	sds   *sdsServer
	dns   *dnsResolver // nil: no DNS
	m     *metrics

	mu       sync.Mutex
	cur      *issued // nil until the first certificate
	renewAt  time.Time
	rootPEM  []byte // trust bundle served as ROOTCA
	rootFile []byte // the bundle's root-cert.pem as last read
	renewals int
	dnsAddr  string // where DNS is served, once it is
	metAddr  string // where metrics are served, once they are
	tokenUse int    // certificates obtained with the bootstrap token
}

// issued is one certificate with its key.
type issued struct {
	chainPEM []byte // leaf first; includes the root when the CA sent it
	keyPEM   []byte
	tls      tls.Certificate
	leaf     *x509.Certificate
}

// New reads the bundle (fields left empty in cfg come from its cluster.env)
// and checks it; it refuses to start when a file is
// missing, the root does not parse, or the token is malformed or expired
// (unless a current certificate is kept in StateDir).
func New(cfg Config) (*Agent, error) {
	b, err := vmbundle.ReadBundle(cfg.BundleDir)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	c, err := cfg.fromEnv(b.Env)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	c = c.withDefaults()
	if _, err := parseRoots(b.RootPEM); err != nil {
		return nil, fmt.Errorf("agent: bundle %s: %s: %w", c.BundleDir, vmbundle.FileRootCert, err)
	}
	claims, err := ParseToken(b.Token)
	if err != nil {
		return nil, fmt.Errorf("agent: bundle %s: %s: %w", c.BundleDir, vmbundle.FileToken, err)
	}
	if err := c.identityFrom(claims); err != nil {
		return nil, fmt.Errorf("agent: bundle %s: %w", c.BundleDir, err)
	}
	if c.Workload, err = workloadFromBundle(b, c.InstanceIP, c.WorkloadName, c.StateDir); err != nil {
		return nil, fmt.Errorf("agent: bundle %s: %w", c.BundleDir, err)
	}
	if c.CAAddress == "" {
		return nil, fmt.Errorf("agent: no CA address (%s in %s)", vmbundle.EnvCAAddr, vmbundle.FileClusterEnv)
	}
	a := &Agent{cfg: c, log: c.Logger.With("identity", c.SPIFFEID()), token: b.Token, rootPEM: b.RootPEM, rootFile: b.RootPEM}
	a.sds = newSDSServer(a.log)
	a.m = newMetrics()
	if c.DNSAddress != "" {
		if a.dns, err = newDNSResolver(c.DNSDomains); err != nil {
			return nil, fmt.Errorf("agent: bundle %s: %s %s: %w", c.BundleDir, vmbundle.FileClusterEnv, vmbundle.EnvDNSDomains, err)
		}
		a.dns.counted = a.m.dnsAnswer
	}
	if err := c.checkMetricsAddress(); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if err := a.loadState(); err != nil {
		a.log.Warn("ignoring the kept certificate", "dir", c.StateDir, "error", err)
	}
	if a.cur == nil && !c.Now().Before(claims.ExpiresAt()) {
		return nil, fmt.Errorf("agent: the bootstrap token expired at %s and there is no current certificate in %q: write a new bundle (controlplane vm bundle)",
			claims.ExpiresAt().UTC().Format(time.RFC3339), c.StateDir)
	}
	return a, nil
}

func (c *Config) identityFrom(t TokenClaims) error {
	if c.Namespace == "" {
		c.Namespace = t.Namespace
	}
	if c.ServiceAccount == "" {
		c.ServiceAccount = t.ServiceAccount
	}
	if c.Namespace != t.Namespace || c.ServiceAccount != t.ServiceAccount {
		return fmt.Errorf("the bootstrap token is for %s/%s but cluster.env says %s/%s", t.Namespace, t.ServiceAccount, c.Namespace, c.ServiceAccount)
	}
	return nil
}

// Run serves SDS on the socket and keeps the certificate fresh until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	stop, err := a.sds.listen(ctx, a.cfg.SDSSocket)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	defer stop()
	a.log.Info("serving SDS", "socket", a.cfg.SDSSocket, "ca", a.cfg.CAAddress)
	if a.cfg.MetricsAddress != "" {
		defer a.serveMetrics(ctx)()
	}
	if a.dns != nil {
		defer a.serveDNS(ctx)()
	}
	a.publish()
	if a.cfg.Workload != nil {
		if err := a.runWorkload(ctx); err != nil {
			return err
		}
	}
	a.loop(ctx)
	return nil
}

// serveDNS starts answering DNS for mesh names and returns the function
// that waits for it to stop once ctx ends. A DNS address that cannot be
// bound is logged and the agent goes on without DNS: the certificate
// matters more.
func (a *Agent) serveDNS(ctx context.Context) (wait func()) {
	s, err := listenDNS(ctx, a.cfg.DNSAddress, a.dns, a.log)
	if err != nil {
		a.log.Error("not answering DNS for mesh names: outbound calls by name will fail", "error", err)
		return func() {}
	}
	a.mu.Lock()
	a.dnsAddr = s.Addr()
	a.mu.Unlock()
	a.log.Info("answering DNS for mesh names", "address", s.Addr(), "domains", a.dns.domains)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.serve(ctx)
	}()
	return func() { <-done }
}

// serveMetrics starts serving the agent's metrics and returns the function
// that waits for it to stop once ctx ends. An address that cannot be bound
// is logged and the agent goes on without metrics.
func (a *Agent) serveMetrics(ctx context.Context) (wait func()) {
	s, err := listenMetrics(ctx, a.cfg.MetricsAddress, a.m, a.log)
	if err != nil {
		a.log.Error("not serving the agent's metrics", "error", err)
		return func() {}
	}
	a.mu.Lock()
	a.metAddr = s.Addr()
	a.mu.Unlock()
	a.log.Info("serving metrics", "address", s.Addr(), "paths", MetricsPaths)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.serve(ctx, a.log)
	}()
	return func() { <-done }
}

// MetricsAddress is where the agent serves its metrics, once it does (""
// before, or when off or its address could not be bound).
func (a *Agent) MetricsAddress() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.metAddr
}

// DNSAddress is where the agent answers DNS, once it does ("" before, or
// when DNS is off or its address could not be bound).
func (a *Agent) DNSAddress() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.dnsAddr
}

// loop renews at half-life and retries with backoff while the CA is unreachable.
func (a *Agent) loop(ctx context.Context) {
	var retry time.Duration
	rootCheck := time.NewTicker(a.cfg.RootCheckInterval)
	defer rootCheck.Stop()
	for {
		wait := a.untilRenewal()
		if retry > 0 {
			wait = retry
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-rootCheck.C:
			timer.Stop()
			a.checkRootFile()
			continue
		case <-timer.C:
		}
		if err := a.renew(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			retry = a.nextRetry(retry)
			a.logFailure(err, retry)
			continue
		}
		retry = 0
	}
}

// checkRootFile pushes a new ROOTCA version when root-cert.pem gained a root.
func (a *Agent) checkRootFile() {
	if a.refreshRoot() {
		a.writeFiles()
		a.publish()
	}
}

// untilRenewal is the time to the renewal point: half the certificate's
// lifetime as seen when it arrived; 0 without a certificate.
func (a *Agent) untilRenewal() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cur == nil {
		return 0
	}
	return max(a.renewAt.Sub(a.cfg.Now()), 0)
}

// nextRetry doubles the last retry delay, between RetryMin and RetryMax, with up to 20% jitter.
func (a *Agent) nextRetry(last time.Duration) time.Duration {
	d := min(max(last*2, a.cfg.RetryMin), a.cfg.RetryMax)
	jitter := time.Duration(rand.Int64N(int64(d)/5 + 1))
	return min(d+jitter, a.cfg.RetryMax)
}

func (a *Agent) logFailure(err error, retry time.Duration) {
	a.mu.Lock()
	cur := a.cur
	a.mu.Unlock()
	if cur == nil {
		a.log.Warn("cannot get a certificate yet", "error", err, "retry_in", retry)
		return
	}
	left := cur.leaf.NotAfter.Sub(a.cfg.Now()).Round(time.Second)
	if left <= 0 {
		a.log.Error("certificate renewal failed and the current certificate has expired", "error", err,
			"expired_ago", -left, "retry_in", retry)
		return
	}
	a.log.Warn("certificate renewal failed; still serving the current certificate", "error", err,
		"expires_in", left, "retry_in", retry)
}

// Current returns the certificate being served (nil before the first).
func (a *Agent) Current() *x509.Certificate {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cur == nil {
		return nil
	}
	return a.cur.leaf
}

// TokenUses counts certificates obtained with the bootstrap token (normally 1:
// renewals use the current certificate).
func (a *Agent) TokenUses() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.tokenUse
}

// Renewals counts certificates obtained since start.
func (a *Agent) Renewals() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.renewals
}
